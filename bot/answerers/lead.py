"""Choose the policy units that answer a question, and put them first.

Search finds the right section; the customer still has to find the sentence. This module scores
every unit (sentence, list item, table row: `bot.answerers.policy_units`) of the best few
sections with signals we already have, and returns the lead: the best units, each with the
neighbour it cannot be read without and the conditions beside it, and which section each came
from so it can be cited. A "how do I" answer also keeps what follows its best step in the same
paragraph or list, while it fits: the next step, or what happens then ("the link is valid for 1
hour"). Scores per unit:

- cosine between the question's vector (the one search already computed) and the unit's;
- lexical coverage: the share of the question's content words (idf-weighted over the candidate
  units, so "hawaii" counts more than "ship") that the unit contains;
- an answer-type match: "how much" wants a price, "how long" a duration, "do you / can I" a
  statement that says no or names a limit, "how do I" a step (a path such as Account > Orders,
  an address, or a sentence that starts with a verb);
- the section's own search score, so a unit of a weak section needs to be much better to lead;
- the names the question shares with the knowledge base: a plan, a place, a product that the
  policy names ("Sprout", "Canada", "Account"), found in the unit, its heading or its title. A
  unit that shares the question's words but not its subject ("free shipping" in the Grower row
  for a question about Sprout) answers a neighbouring question, so it loses what it lacks;
- whether the unit says anything: a sentence that only names its section ("The Greenhouse Club
  is our membership.") or points elsewhere ("see the wholesale terms") states no fact.

The weights were tuned on bench/data/policy_tuning.jsonl, never on the evaluation set
(`python -m bench.policy_answers --tune`; figures in docs/benchmarks/policy.md).

Unit vectors are remembered by text, so a section's units are embedded once until its text
changes; a question embeds only the units it has not seen, in one batch.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bot.answerers.policy_units import PolicyUnit, split_units
from bot.indexing.embedding import encode_by_length
from bot.indexing.lexical import tokenize

if TYPE_CHECKING:
    from bot.indexing.knowledge_base import SearchHit

# A logistic regression over FEATURES, fitted on the tuning sets' questions (a unit is a positive when
# it states an accepted fact of its question): `python -m bench.lead_weights`, which also reports it
# cross-validated and on data/policy_testset.jsonl (docs/benchmarks/lead_weights.md).
WEIGHTS: dict[str, float] = {
    "cosine": 2.642, "cosine_bare": 3.55, "lexical": 2.009, "answer_type": -0.262, "type_missing": -0.919,
    "section": 0.461, "names_missing": -0.124, "names_missing_row": -1.466, "names_in_row": 1.636,
    "contested_missing": -1.94, "says_nothing": -1.335, "intro": 0.154, "row": -0.914, "item": -0.03,
}
BIAS = -1.583
STEP_BONUS = 3.0  # added to a step's score for a "how do I" question (chosen on the tuning sets, bench.handoff)
# Whether the lead answers at all is a second, question-level model (the same bench): the best
# unit's score, whether it sits in the section search ranked first, that section's score, how far
# it leads the best unit of any other section, and its own section's score. Its log-odds is the
# answer's evidence for the answer-or-hand-off decision (bot.handoff).
EVIDENCE_FEATURES = ("lead_score", "in_best_section", "best_section_score", "lead_over_other_sections",
                     "own_section_score", "contested_missing", "closest_in_meaning", "most_words_shared")
EVIDENCE_WEIGHTS = (0.663, 0.693, 0.009, 0.543, 0.077, 0.038, 0.376, -0.323)
EVIDENCE_BIAS = -1.896
# A further unit joins the lead only when it scores within this much of the best one.
FURTHER_UNIT_MARGIN = 0.3  # on the log-odds scale of WEIGHTS
UNIT_CACHE_SIZE = 20_000
ENCODE_BATCH = 8

_PRICE_QUESTION = re.compile(r"\b(?:how much|cost|costs|price|prices|priced|fee|fees|charge|charged|pay)\b", re.I)
_DURATION_QUESTION = re.compile(
    r"\b(?:how long|how many (?:business )?(?:days|hours|weeks|months|years|minutes)|how soon|how quickly|"
    r"when|until|valid|expire|deadline)\b", re.I)
_COUNT_QUESTION = re.compile(r"\b(?:how many|minimum|maximum|how big|how large|what size)\b", re.I)
_YES_NO_QUESTION = re.compile(
    r"^\s*(?:do|does|did|will|would|can|could|is|are|may|should|shall|have|has)\b", re.I)
# "How do I …?" asks for the steps, wherever in the message it stands ("I forgot my password. How do I reset it?").
_PROCEDURE_QUESTION = re.compile(
    r"\b(?:how (?:do|can|should|would) (?:i|we)|what (?:do|should) (?:i|we) do|where (?:do|can) (?:i|we))\b", re.I)
# "What's your email?", "Is there a number I can call?": the answer is a way to reach someone.
_CONTACT_QUESTION = re.compile(
    r"\b(?:e-?mail address|email (?:you|us|support)|what(?:'s| is) (?:the |your )?(?:\w+ )?e-?mail|phone|ring|"
    r"call (?:you|us)|(?:contact|reach) (?:you|us|support|someone|a person)|talk to (?:someone|a person))\b", re.I)
_OWN_CONTACT_DETAILS = re.compile(r"\b(?:my|change|update)\b[^.?!]*\be-?mail\b", re.I)  # "change my email address"
_CONTACT = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+|\bphone\b|\+?\d[\d ()-]{7,}\d", re.I)
_PRICE = re.compile(r"[$€£]\s?\d|\d\s?%")
_DURATION = re.compile(
    r"\b\d+(?:[-–]\d+)?\s*(?:business\s+)?(?:days?|hours?|weeks?|months?|years?|minutes?)\b|"
    r"\b(?:one|two|three|four|five|six|seven)\s+(?:business\s+)?(?:days?|hours?|weeks?|months?|years?)\b|"
    r"\b(?:until|within|never expire)\b", re.I)
_NUMBER = re.compile(r"\d")
# A step: a path through the site ("Account > Privacy"), an address, or a sentence that starts with a verb.
_STEP = re.compile(
    r"\w \s*>\s*\w|\b[a-z0-9-]+\.(?:example|com|org|net)/|^\s*(?:to [a-z ]+, )?(?:go|choose|select|use|open|click|"
    r"apply|create|change|print|drop|send|start|sign|enter|email|call|contact|report|visit|follow|pick|pack)\b", re.I)
_POINTER = re.compile(r"\bsee (?:the|our)\b", re.I)
_NAME_TOKEN = re.compile(r"[A-Za-z][\w'-]*")
_YES_NO = re.compile(
    r"\b(?:not|no|never|cannot|can't|don't|doesn't|only|except|unless|free|must)\b|n't\b", re.I)

Encoder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class LeadUnit:
    """A unit chosen for the lead and the search hit (section) it comes from."""

    hit: SearchHit
    unit: PolicyUnit
    score: float
    features: tuple[float, ...] = ()  # its row of FEATURES, for the evidence of the answer it leads


def answer_types(question: str) -> frozenset[str]:
    """What kind of fact answers the question: price, duration, count, yes/no, a procedure's step,
    a way to contact us (several may apply)."""
    kinds = set()
    if _PRICE_QUESTION.search(question):
        kinds.add("price")
    if _DURATION_QUESTION.search(question):
        kinds.add("duration")
    if _COUNT_QUESTION.search(question):
        kinds.add("count")
    if _YES_NO_QUESTION.match(question):
        kinds.add("yes_no")
    if _PROCEDURE_QUESTION.search(question):
        kinds.add("procedure")
    if _CONTACT_QUESTION.search(question) and not _OWN_CONTACT_DETAILS.search(question):
        kinds.add("contact")
    return frozenset(kinds)


def matches_answer_type(text: str, kinds: frozenset[str]) -> bool:
    checks = {"price": _PRICE, "duration": _DURATION, "count": _NUMBER, "yes_no": _YES_NO, "procedure": _STEP,
              "contact": _CONTACT}
    return any(checks[kind].search(text) for kind in kinds)


def knowledge_names(texts: Sequence[str]) -> frozenset[str]:
    """Words the knowledge base uses as names (lexical terms): written with a capital where no
    sentence starts and never in lower case ("Sprout", "Canada", "Zone"), and the first cell of a
    table row ("Starter"). "Store credit" at the start of a list item, or "Pacific Time", does not
    make "store" or "time" a name: the policy writes both in lower case elsewhere."""
    capitalised: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    for text in texts:
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("|"):
                cells = [c.strip() for c in stripped.strip("|").split("|")]
                if cells and cells[0] and not set(cells[0]) <= set("-: "):
                    capitalised.update(tokenize(cells[0]))
                for cell in cells[1:]:  # "Oregon, Washington, California": every capital in a cell names
                    capitalised.update(t for w in _NAME_TOKEN.findall(cell) if w[0].isupper() and len(w) > 2
                                       for t in tokenize(w))
                continue
            for match in _NAME_TOKEN.finditer(line):
                word = match.group()
                before = line[: match.start()].rstrip()
                if word[0].islower():
                    lower.update(tokenize(word))
                elif len(word) > 2 and before and before[-1] not in ".!?:#|>\"(-*":
                    capitalised.update(tokenize(word))
    return frozenset(term for term in capitalised if not lower[term] and not term.isdigit())


def says_nothing(unit_text: str, question_terms: set[str], section_terms: set[str]) -> bool:
    """A unit that states no fact: it points elsewhere, or it only names what its section and the
    question already name ("The Greenhouse Club is our membership.")."""
    if _POINTER.search(unit_text):
        return True
    if _NUMBER.search(unit_text) or _STEP.search(unit_text) or len(unit_text.split()) > 10:
        return False  # a number, a path ("Account > Profile"), an address, or a sentence with room for a fact
    new = set(tokenize(unit_text)) - question_terms - section_terms
    return len(new) <= 1


def lexical_coverage(question_terms: Sequence[str], unit_terms: set[str], idf: dict[str, float]) -> float:
    """Share (0..1) of the question's idf mass whose words the unit contains."""
    total = sum(idf.get(t, 0.0) for t in question_terms)
    if total <= 0:
        return 0.0
    return sum(idf.get(t, 0.0) for t in question_terms if t in unit_terms) / total


class UnitVectors:
    """Unit embeddings remembered by text (an edited section gets new units, hence new keys).

    Shared by the threads answering at once: the lock guards the dictionary only, never an encode.
    """

    def __init__(self, encode: Encoder, size: int = UNIT_CACHE_SIZE) -> None:
        self._encode = encode
        self._size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        with self._lock:
            found = {k: self._vectors[k] for k in keys if k in self._vectors}
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        for text, vector in zip(missing, encode_by_length(self._encode, missing, ENCODE_BATCH), strict=True):
            found[hashlib.sha1(text.encode()).hexdigest()] = vector
        with self._lock:
            for key in keys:
                self._vectors[key] = found[key]
                self._vectors.move_to_end(key)
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)


def in_context(hit: SearchHit, unit: PolicyUnit) -> str:
    """A unit with the title and heading of its section, as the chunks are embedded, so "You do
    not need to send the plant back." reads as part of the arrival guarantee's claims."""
    where = " > ".join(part for part in (hit.source.title, hit.source.heading) if part)
    return f"{where}: {unit.text}" if where else unit.text


# What a unit's score is made of (`unit_features`), and each one's weight (`WEIGHTS`, with `BIAS`).
FEATURES = (
    "cosine",  # question vs the unit in its section's context
    "cosine_bare",  # question vs the unit's own words
    "lexical",  # idf-weighted share of the question's words the unit has
    "answer_type",  # the unit holds what the question asks for: a price, a duration, a step...
    "type_missing",  # the question asks for such a fact and the unit holds none
    "section",  # the section's search score
    "names_missing",  # share of the question's names (plans, places) missing from the unit and its heading
    "names_missing_row",  # the same, for a table row: a row is one case of many
    "names_in_row",  # a table row that names the case asked ("Grower" for the Grower plan)
    "contested_missing",  # share of the question's words that other candidate units have and this one lacks
    "says_nothing",  # names its section or points elsewhere ("see the wholesale terms")
    "intro",  # introduces a list ("you choose one of:")
    "row",
    "item",
)


def unit_features(
    question: str, question_vector: np.ndarray, hits: Sequence[SearchHit], vectors: UnitVectors,
    *, names: frozenset[str] = frozenset(), extra_terms: Sequence[str] = (), said_otherwise: set[str] | None = None,
) -> tuple[list[tuple[SearchHit, PolicyUnit]], np.ndarray]:
    """Every unit of `hits` and its row of FEATURES (columns in that order). `said_otherwise`: the
    question's words that the glossary maps to the policy's own word (already appended to it), left
    out of the word overlap ("send back" must not match "send the plant back" for a return)."""
    candidates = [(hit, unit) for hit in hits for unit in split_units(hit.text)]
    if not candidates:
        return [], np.zeros((0, len(FEATURES)), dtype=np.float32)
    qvec = np.asarray(question_vector, dtype=np.float32)
    cosine = vectors([in_context(hit, unit) for hit, unit in candidates]) @ qvec
    bare = vectors([unit.text for _, unit in candidates]) @ qvec if WEIGHTS.get("cosine_bare") else cosine
    unit_terms = [set(tokenize(unit.text)) for _, unit in candidates]
    document_frequency = Counter(term for terms in unit_terms for term in terms)
    count = len(candidates)
    idf = {term: math.log1p(count / df) for term, df in document_frequency.items()}
    question_terms = [t for t in dict.fromkeys(tokenize(question)) if t not in (said_otherwise or set())]
    unseen = math.log1p(count)  # a question word no unit uses still counts against every unit
    for term in question_terms:
        idf.setdefault(term, unseen)
    asked = set(question_terms)
    section_terms = {hit.chunk_id: set(tokenize(f"{hit.source.title} {hit.source.heading}")) for hit in hits}
    wanted_names = [t for t in dict.fromkeys([*question_terms, *extra_terms]) if t in names]
    kinds = answer_types(question)
    with_heading = [unit_terms[i] | section_terms[hit.chunk_id] for i, (hit, _) in enumerate(candidates)]
    contested = [t for t in question_terms if any(t in terms for terms in with_heading)]
    contested_idf = {t: math.log1p(count / sum(t in terms for terms in with_heading)) for t in contested}
    contested_total = sum(contested_idf.values())
    rows = []
    for position, (hit, unit) in enumerate(candidates):
        typed = matches_answer_type(unit.text, kinds)
        missing = 0.0
        if wanted_names:
            around = unit_terms[position] | section_terms[hit.chunk_id]
            missing = sum(name not in around for name in wanted_names) / len(wanted_names)
        rows.append((
            float(cosine[position]),
            float(bare[position]),
            lexical_coverage(question_terms, unit_terms[position], idf),
            float(typed),
            float(bool(kinds) and not typed),
            hit.score,
            missing,
            missing if unit.kind == "row" else 0.0,
            (1.0 - missing) if unit.kind == "row" and wanted_names else 0.0,
            (sum(v for t, v in contested_idf.items() if t not in with_heading[position]) / contested_total
             if contested_total else 0.0),
            float(says_nothing(unit.text, asked, section_terms[hit.chunk_id])),
            float(unit.text.endswith(":")),
            float(unit.kind == "row"),
            float(unit.kind == "item"),
        ))
    return candidates, np.asarray(rows, dtype=np.float32)


def score_units(
    question: str, question_vector: np.ndarray, hits: Sequence[SearchHit], vectors: UnitVectors,
    *, names: frozenset[str] = frozenset(), extra_terms: Sequence[str] = (), said_otherwise: set[str] | None = None,
) -> list[LeadUnit]:
    """Every unit of `hits`, scored (WEIGHTS over FEATURES), best first. `names`: the knowledge
    base's names (`knowledge_names`); `extra_terms`: terms the question implies ("canada" for Montreal)."""
    candidates, features = unit_features(question, question_vector, hits, vectors, names=names,
                                         extra_terms=extra_terms, said_otherwise=said_otherwise)
    if not candidates:
        return []
    weights = np.asarray([WEIGHTS.get(name, 0.0) for name in FEATURES], dtype=np.float32)
    scores = features @ weights + BIAS
    if "procedure" in answer_types(question):
        # "How do I…?" wants a step: a path, an address, a sentence that starts with a verb. What may be
        # done ("…can be returned within 30 days") shares its words but does not say how.
        scores = scores + STEP_BONUS * np.asarray([bool(_STEP.search(unit.text)) for _, unit in candidates])
    scored = [LeadUnit(hit, unit, round(float(score), 4), tuple(float(v) for v in row))
              for (hit, unit), score, row in zip(candidates, scores, features, strict=True)]
    scored.sort(key=lambda lead: -lead.score)
    return scored


def evidence_features(question: str, scored: Sequence[LeadUnit], hits: Sequence[SearchHit]) -> tuple[float, ...]:
    top = scored[0]
    other = next((s.score for s in scored[1:] if s.hit.chunk_id != top.hit.chunk_id), top.score - 3.0)
    return (top.score, float(top.hit.chunk_id == hits[0].chunk_id), hits[0].score, top.score - other, top.hit.score,
            contested_missing(question, scored), _is_best_by(scored, "cosine_bare"), _is_best_by(scored, "lexical"))


def _is_best_by(scored: Sequence[LeadUnit], feature: str) -> float:
    """Whether the lead's unit is also the best by one signal alone (two signals agreeing is evidence)."""
    column = FEATURES.index(feature)
    if not scored[0].features:
        return 0.0
    best = max(s.features[column] for s in scored)
    return float(scored[0].features[column] >= best)


def contested_missing(question: str, scored: Sequence[LeadUnit]) -> float:
    """Share (idf-weighted) of the question's words that some candidate unit has and the lead's unit
    lacks: "yearly" in "What is the yearly price of the Collector plan?" is in the yearly-billing
    sentence, not in the Collector row, so leading with the row answers a neighbouring question."""
    terms = [set(tokenize(f"{s.unit.text} {s.hit.source.heading}")) for s in scored]
    asked = [t for t in dict.fromkeys(tokenize(question)) if any(t in unit for unit in terms)]
    if not asked:
        return 0.0
    idf = {t: math.log1p(len(terms) / sum(t in unit for unit in terms)) for t in asked}
    return sum(idf[t] for t in asked if t not in terms[0]) / sum(idf.values())


def answer_evidence(question: str, scored: Sequence[LeadUnit], hits: Sequence[SearchHit]) -> float:
    """Log-odds that the lead led by `scored[0]` answers the question (EVIDENCE_FEATURES)."""
    features = evidence_features(question, scored, hits)
    return round(float(np.dot(EVIDENCE_WEIGHTS, features) + EVIDENCE_BIAS), 4)


def _with_context(chosen: LeadUnit, units: list[PolicyUnit]) -> list[PolicyUnit]:
    """The unit, the units it leans on, the conditions in its paragraph, and, for a sentence
    introducing a list ("you choose one of:"), the list it introduces."""
    before: list[int] = []
    pending = chosen.unit.context
    while pending is not None and pending not in before:
        before.insert(0, pending)
        pending = units[pending].context
    after: list[int] = []
    for unit in units:
        introduced = chosen.unit.text.endswith(":") and unit.context == chosen.unit.index
        if introduced or (unit.block == chosen.unit.block and unit.condition and unit.kind == "sentence"):
            for index in (unit.context, unit.index):
                if index is not None and index != chosen.unit.index and index not in before + after:
                    after.append(index)
    return [units[i] for i in [*before, chosen.unit.index, *after]]


def choose_lead(
    scored: list[LeadUnit], max_chars: int, max_units: int, *, steps: bool = False
) -> list[tuple[SearchHit, list[PolicyUnit]]]:
    """The lead as (section, its units in document order), best section first.

    Within a section the policy's own order is kept: it states the rule before its exception,
    and a pointer ("This is our warranty") after what it points at.

    The best unit always leads, with what it needs to be read correctly, even past `max_chars`:
    a shorter answer that drops "only when the return is our mistake" would be a wrong one.
    Further units join while they score within FURTHER_UNIT_MARGIN of the best and fit.
    """
    if not scored:
        return []
    best = scored[0].score
    groups: dict[str, tuple[SearchHit, list[PolicyUnit]]] = {}
    units_of: dict[str, list[PolicyUnit]] = {}
    used = 0
    chosen_count = 0
    for lead in scored:
        if chosen_count >= max_units or (chosen_count and lead.score < best - FURTHER_UNIT_MARGIN):
            break
        cid = lead.hit.chunk_id
        if cid not in units_of:
            units_of[cid] = split_units(lead.hit.text)
        taken = groups.get(cid, (lead.hit, []))[1]
        if any(u.index == lead.unit.index for u in taken):
            continue
        needed = [u for u in _with_context(lead, units_of[cid]) if all(u.index != t.index for t in taken)]
        size = sum(len(u.text) + 1 for u in needed)
        if chosen_count and used + size > max_chars:
            continue
        groups[cid] = (lead.hit, taken + needed)
        used += size
        chosen_count += 1
    if steps:
        _add_next_steps(scored[0], units_of[scored[0].hit.chunk_id], groups, max_chars - used)
    return [(hit, sorted(units, key=lambda u: u.index)) for hit, units in groups.values()]


def _add_next_steps(
    best: LeadUnit, units: list[PolicyUnit], groups: dict[str, tuple[SearchHit, list[PolicyUnit]]], room: int
) -> None:
    """After the best step of a procedure, what comes next in its paragraph or list (the next step,
    "the link is valid for 1 hour"), while it fits: the first step alone leaves the customer halfway.
    A table's next row is another case, not a next step, so rows are never added."""
    if best.unit.kind == "row":
        return
    hit, taken = groups[best.hit.chunk_id]
    for unit in units[best.unit.index + 1 :]:
        if unit.block != best.unit.block or unit.kind == "row" or len(unit.text) + 1 > room:
            break
        if all(unit.index != t.index for t in taken):
            taken = [*taken, unit]
            room -= len(unit.text) + 1
    groups[best.hit.chunk_id] = (hit, taken)


def render_lead(groups: list[tuple[SearchHit, list[PolicyUnit]]]) -> str:
    """Sentences of one paragraph stay on one line; items, rows and other paragraphs get their own."""
    lines: list[str] = []
    for _, units in groups:
        previous: PolicyUnit | None = None
        for unit in units:
            same_paragraph = (
                previous is not None and unit.kind == previous.kind == "sentence" and unit.block == previous.block
                and unit.index == previous.index + 1
            )
            if same_paragraph:
                lines[-1] += " " + unit.text
            else:
                lines.append(unit.text)
            previous = unit
    return "\n".join(lines)
