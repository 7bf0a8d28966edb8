"""Plant-care answers from the expert memory, with the evidence each one rests on.

Read one by one, the bundled 135M model's own plant-care answers were wrong far more often than
right, and every right domain answer was an expert entry given as written. So the domain route
answers from the memory: the nearest entry's answer as written, framed as the team's answer to
the entry's question (`similar`), or, when no whole entry fits, the sentences of the nearest
entries that answer the question, each naming its entry (`excerpt`). Each proposal carries its
evidence: the log-odds, from a logistic model over a handful of signals, that a customer would
judge it right. The pipeline's answer-or-hand-off decision (`bot.handoff`) shows the first one
whose evidence reaches its kind's calibrated threshold; when none does, a person answers.

Signals per candidate entry (`ENTRY_FEATURES`): the cosine between the question and the entry's
question with its answer, and with its question alone; which of the two searches ranked it
first; how far it leads the next entry; how much of the question's wording the entry covers
(plainly, and weighted by how rare each word is among the entries); and whether it names the
plant asked. An entry about another plant than the one asked (per the glossary) is never a
candidate: the Phalaenopsis watering interval is the wrong answer for a Cattleya however close
the sentences sit; nor is one written about another topic (the flytrap's feeding entry for a
question about its flower stalk). The weights are fitted on the tuning sets by `python -m bench.memory_evidence`;
fitted, the two coverages and "ranked first" carry most of the weight, raw cosine little.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bot.answerers.lead import UnitVectors
from bot.answerers.policy_units import split_sentences
from bot.glossary import Glossary
from bot.interfaces import Draft
from bot.memory.framing import excerpt_text, similar_answer_text
from bot.memory.index import Lookup, MemoryHit
from bot.memory.matching import _covered, content_words, missing_subjects

ENTRY_FEATURES = (
    "answer_similarity",  # cosine: question vs the entry's question with its answer
    "question_similarity",  # cosine: question vs the entry's question
    "first_by_answer",  # the question+answer search ranks it first
    "first_by_question",  # the question search ranks it first
    "lead",  # how far its answer similarity leads the next candidate's
    "coverage",  # share of the question's content words the entry's question and answer have
    "rare_coverage",  # the same share weighted by how rare each word is among the entries (idf)
    "same_plant",  # the entry's question names the plant the question names (glossary)
    "same_topic",  # the entry's question is about a topic the question names (watering, light...)
)
ENTRY_WEIGHTS: dict[str, float] = {
    "answer_similarity": 0.267, "question_similarity": -0.254, "first_by_answer": 1.664, "first_by_question": 0.385,
    "lead": 2.069, "coverage": 1.864, "rare_coverage": 1.715, "same_plant": 0.815, "same_topic": 1.073,
}
ENTRY_BIAS = -3.126
SENTENCE_FEATURES = ("cosine", "coverage", "entry_evidence")
SENTENCE_WEIGHTS: dict[str, float] = {"cosine": 2.196, "coverage": 1.496, "entry_evidence": 0.712}
SENTENCE_BIAS = -1.295
TOPIC_FILTER = True
EXCERPT_ENTRIES = 3  # entries whose sentences an excerpt may quote
EXCERPT_SENTENCES = 2  # the best sentence and the one after it, when it continues the same point

EmbedTexts = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Candidate:
    hit: MemoryHit  # the entry, with its best similarity
    answer_similarity: float
    question_similarity: float
    features: tuple[float, ...]
    evidence: float


def _coverage(question_words: set[str], text: str, idf: Mapping[str, float] | None = None) -> float:
    if not question_words:
        return 0.0
    theirs = content_words(text)
    weight = (lambda word: idf.get(word, idf.get("", 1.0))) if idf else (lambda word: 1.0)
    total = sum(weight(word) for word in question_words)
    return sum(weight(word) for word in question_words if _covered(word, theirs)) / total if total else 0.0


def candidates(question: str, found: Lookup, glossary: Glossary,
               idf: Mapping[str, float] | None = None, vocabulary: frozenset[str] = frozenset()) -> list[Candidate]:
    """The entries the two searches found, minus those about another plant, scored, best first.
    `idf`: how rare each content word is among the entries' questions and answers ("" = unseen)."""
    by_answer = {hit.entry.entry_id: hit for hit in found.by_answer}
    by_question = {hit.entry.entry_id: hit for hit in found.by_question}
    if not by_answer and not by_question:
        return []
    floor_a = min((h.similarity for h in found.by_answer), default=0.0)
    floor_q = min((h.similarity for h in found.by_question), default=0.0)
    first_a = found.by_answer[0].entry.entry_id if found.by_answer else ""
    first_q = found.by_question[0].entry.entry_id if found.by_question else ""
    asked_plants = glossary.plants_in(question)
    asked_topics = glossary.topics_in(question)
    known_names = {word.lower() for mention in glossary.mentions(question) for word in mention.words.split()}
    asked = content_words(question) - {n.lower() for n in asked_plants}
    rows: list[tuple[MemoryHit, float, float]] = []
    for entry_id in dict.fromkeys([*by_answer, *by_question]):
        hit = by_answer.get(entry_id) or by_question[entry_id]
        if (glossary.plant_conflict(question, hit.entry.question) or (TOPIC_FILTER and glossary.topic_conflict(
                question, hit.entry.question)) or _names_another(question, hit, vocabulary, known_names)):
            continue
        # A search that did not return the entry leaves it below that search's last hit.
        sa = by_answer[entry_id].similarity if entry_id in by_answer else floor_a
        sq = by_question[entry_id].similarity if entry_id in by_question else floor_q
        rows.append((hit, sa, sq))
    if not rows:
        return []
    similarities = sorted((sa for _, sa, _ in rows), reverse=True)
    weights = np.asarray([ENTRY_WEIGHTS.get(name, 0.0) for name in ENTRY_FEATURES])
    scored = []
    for hit, sa, sq in rows:
        others = [s for s in similarities if s != sa] or [0.0]
        features = (
            sa,
            sq,
            float(hit.entry.entry_id == first_a),
            float(hit.entry.entry_id == first_q),
            sa - max(others) if sa >= similarities[0] else sa - similarities[0],
            _coverage(asked, f"{hit.entry.question} {hit.entry.answer}"),
            _coverage(asked, f"{hit.entry.question} {hit.entry.answer}", idf or {}),
            float(bool(asked_plants & glossary.plants_in(hit.entry.question))),
            float(bool(asked_topics & glossary.topics_in(hit.entry.question))),
        )
        evidence = float(np.dot(weights, features) + ENTRY_BIAS)
        scored.append(Candidate(MemoryHit(hit.entry, max(sa, sq)), sa, sq, features, round(evidence, 4)))
    scored.sort(key=lambda c: -c.evidence)
    return scored


def _names_another(question: str, hit: MemoryHit, vocabulary: frozenset[str], known: set[str]) -> bool:
    """The question names something the glossary does not know (a capitalised name, or a name the
    entries use) that the entry's question does not: "mealybugs on my Haworthiopsis" is not the
    succulents' entry. Names the glossary knows are its call (a Venus flytrap is a carnivorous plant,
    Minnesota a place); numbers are measurements here ("28 degrees"), acronyms ("TDS") not subjects."""
    acronyms = {w.lower() for w in question.split() if w.isupper() and len(w) > 1}
    return any(name not in known and name not in acronyms and not any(c.isdigit() for c in name)
               for name in missing_subjects(question, hit.entry.question, vocabulary))


def similar_draft(candidate: Candidate) -> Draft:
    entry = candidate.hit.entry
    return Draft(
        text=similar_answer_text(entry.question, entry.answer),
        confidence=round(candidate.answer_similarity, 4),
        kind="similar",
        model_version=f"memory:{entry.entry_id}",
        evidence=candidate.evidence,
        found=f"expert entry \u201c{entry.question}\u201d (similarity {candidate.answer_similarity:.2f})",
    )


@dataclass(frozen=True)
class Excerpt:
    entry: MemoryHit
    sentences: tuple[str, ...]
    features: tuple[float, ...]
    evidence: float


def best_excerpt(question: str, question_vector: np.ndarray, pool: Sequence[Candidate],
                 vectors: UnitVectors) -> Excerpt | None:
    """The sentence of the nearest entries that answers the question best, with the next one of
    its entry when that continues it; None when the entries have no sentences."""
    asked = content_words(question)
    rows: list[tuple[Candidate, int, list[str]]] = []
    for candidate in pool[:EXCERPT_ENTRIES]:
        sentences = split_sentences(candidate.hit.entry.answer)
        rows += [(candidate, index, sentences) for index in range(len(sentences))]
    if not rows:
        return None
    cosine = vectors([sentences[index] for _, index, sentences in rows]) @ np.asarray(question_vector, np.float32)
    weights = np.asarray([SENTENCE_WEIGHTS.get(name, 0.0) for name in SENTENCE_FEATURES])
    best: Excerpt | None = None
    for position, (candidate, index, sentences) in enumerate(rows):
        features = (float(cosine[position]), _coverage(asked, sentences[index]), candidate.evidence)
        evidence = float(np.dot(weights, features) + SENTENCE_BIAS)
        if best is None or evidence > best.evidence:
            chosen = tuple(sentences[index:index + EXCERPT_SENTENCES])
            best = Excerpt(candidate.hit, chosen, features, round(evidence, 4))
    return best


def excerpt_draft(excerpt: Excerpt) -> Draft:
    entry = excerpt.entry.entry
    return Draft(
        text=excerpt_text(entry.question, " ".join(excerpt.sentences)),
        confidence=round(1 / (1 + math.exp(-excerpt.evidence)), 4),
        kind="excerpt",
        model_version=f"memory:{entry.entry_id}",
        evidence=excerpt.evidence,
        found=f"from the expert entry \u201c{entry.question}\u201d: \u201c{' '.join(excerpt.sentences)[:200]}\u201d",
    )
