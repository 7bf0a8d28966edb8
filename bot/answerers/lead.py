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
- the section's own search score, so a unit of a weak section needs to be much better to lead.

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

# Tuned on bench/data/policy_tuning.jsonl (bench/policy_answers.py --tune).
COSINE_WEIGHT = 1.0
LEXICAL_WEIGHT = 0.2
ANSWER_TYPE_WEIGHT = 0.1
SECTION_WEIGHT = 1.0
# A further unit joins the lead only when it scores within this much of the best one.
FURTHER_UNIT_MARGIN = 0.04
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
_YES_NO = re.compile(
    r"\b(?:not|no|never|cannot|can't|don't|doesn't|only|except|unless|free|must)\b|n't\b", re.I)

Encoder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class LeadUnit:
    """A unit chosen for the lead and the search hit (section) it comes from."""

    hit: SearchHit
    unit: PolicyUnit
    score: float


def answer_types(question: str) -> frozenset[str]:
    """What kind of fact answers the question: price, duration, count, yes/no (several may apply)."""
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
    return frozenset(kinds)


def matches_answer_type(text: str, kinds: frozenset[str]) -> bool:
    checks = {"price": _PRICE, "duration": _DURATION, "count": _NUMBER, "yes_no": _YES_NO, "procedure": _STEP}
    return any(checks[kind].search(text) for kind in kinds)


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


def score_units(
    question: str, question_vector: np.ndarray, hits: Sequence[SearchHit], vectors: UnitVectors
) -> list[LeadUnit]:
    """Every unit of `hits`, scored, best first."""
    candidates = [(hit, unit) for hit in hits for unit in split_units(hit.text)]
    if not candidates:
        return []
    unit_vectors = vectors([unit.text for _, unit in candidates])
    cosine = unit_vectors @ np.asarray(question_vector, dtype=np.float32)
    unit_terms = [set(tokenize(unit.text)) for _, unit in candidates]
    document_frequency = Counter(term for terms in unit_terms for term in terms)
    count = len(candidates)
    idf = {term: math.log1p(count / df) for term, df in document_frequency.items()}
    question_terms = list(dict.fromkeys(tokenize(question)))
    unseen = math.log1p(count)  # a question word no unit uses still counts against every unit
    for term in question_terms:
        idf.setdefault(term, unseen)
    kinds = answer_types(question)
    scored = []
    for position, (hit, unit) in enumerate(candidates):
        score = (
            COSINE_WEIGHT * float(cosine[position])
            + LEXICAL_WEIGHT * lexical_coverage(question_terms, unit_terms[position], idf)
            + ANSWER_TYPE_WEIGHT * float(matches_answer_type(unit.text, kinds))
            + SECTION_WEIGHT * hit.score
        )
        if unit.text.endswith(":"):
            score -= ANSWER_TYPE_WEIGHT  # "you choose one of:" introduces the answer, it is not one
        scored.append(LeadUnit(hit, unit, round(score, 4)))
    scored.sort(key=lambda lead: -lead.score)
    return scored


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
