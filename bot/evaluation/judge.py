"""Right, wrong or handed off: how a support team reads an answer, turned into a rule.

Token F1 gives a wordy wrong answer partial credit ("Living Stones require 10 to 25 gallons per
day" shares half its words with the right one). A customer does not: an answer is right when it
states the fact they needed, and wrong when it states anything else, and a wrong answer costs
more than an honest hand-off. So a test item carries keys written from its reference:

- `accept`: phrases, each one enough to make a given answer right; an element may itself be a
  list of phrases that must all appear ("Zone 3" and "$24.95");
- `reject`: phrases that make an answer wrong whatever else it says (the neighbouring fact a
  careless answer gives: another zone's price, the plant rule for a pot question);
- `answerable: false`: nothing the shop published or its staff wrote answers the question, so a
  hand-off is the honest outcome (the question still counts among those a bot should answer).

Phrases match case-insensitively at word boundaries, with whitespace, dashes and quotes
normalised, so "30 days" never matches "130 days", "3–5" matches "3-5" and "60 %" matches "60%".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["right", "wrong", "handed_off", "unjudged"]
VERDICTS: tuple[Verdict, ...] = ("right", "wrong", "handed_off", "unjudged")

_DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"), "-")
_UNIT_SPACE = re.compile(r"(?<=\d)\s+([%°])")
_QUOTES = {ord("\u2018"): "'", ord("\u2019"): "'", ord("\u201c"): '"', ord("\u201d"): '"'}


@dataclass(frozen=True)
class AnswerKey:
    """What makes an answer to one test item right or wrong (see the module docstring)."""

    accept: tuple[tuple[str, ...], ...] = ()
    reject: tuple[str, ...] = ()
    answerable: bool = True

    @property
    def has_keys(self) -> bool:
        return bool(self.accept or self.reject) or not self.answerable


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    why: str


def normalize_for_match(text: str) -> str:
    """Lower case, NFKC, one kind of dash and quote, single spaces, "*"/"_" emphasis dropped."""
    text = unicodedata.normalize("NFKC", text).translate(_DASHES).translate(_QUOTES)
    text = text.replace("*", "").replace("`", "")
    text = _UNIT_SPACE.sub(r"\1", text)  # "60 %" and "60%", "5 °C" and "5°C" say the same
    return " ".join(text.lower().split())


def contains_phrase(normalized_text: str, phrase: str) -> bool:
    """Whether the phrase occurs in the (normalised) text, not inside a longer word or number."""
    wanted = normalize_for_match(phrase)
    if not wanted:
        return False
    start = r"(?<![\w])" if wanted[0].isalnum() else ""
    end = r"(?![\w])" if wanted[-1].isalnum() else ""
    # "$24.95" must not match "$24.955", nor "30 days" match "130 days": a number continues
    # through a decimal point, so "." followed by a digit counts as part of the word.
    if wanted[-1].isdigit():
        end = r"(?![\w]|[.,]\d)"
    return re.search(start + re.escape(wanted) + end, normalized_text) is not None


def parse_key(data: Mapping[str, Any]) -> AnswerKey:
    """The `accept` / `reject` / `answerable` fields of a test item; ValueError names the field."""
    raw_accept = data.get("accept", [])
    if isinstance(raw_accept, str):
        raw_accept = [raw_accept]
    if not isinstance(raw_accept, list):
        raise ValueError("'accept' must be a list of phrases (a phrase may be a list of phrases that must all appear)")
    accept: list[tuple[str, ...]] = []
    for element in raw_accept:
        group = [element] if isinstance(element, str) else element
        if not isinstance(group, list) or not group or not all(isinstance(p, str) and p.strip() for p in group):
            raise ValueError(f"'accept': {element!r} is neither a phrase nor a non-empty list of phrases")
        accept.append(tuple(p.strip() for p in group))
    raw_reject = data.get("reject", [])
    if isinstance(raw_reject, str):
        raw_reject = [raw_reject]
    if not isinstance(raw_reject, list) or not all(isinstance(p, str) and p.strip() for p in raw_reject):
        raise ValueError("'reject' must be a list of phrases")
    answerable = data.get("answerable", True)
    if not isinstance(answerable, bool):
        raise ValueError("'answerable' must be true or false")
    return AnswerKey(tuple(accept), tuple(p.strip() for p in raw_reject), answerable)


def judge_answer(
    answer: str,
    *,
    handed_off: bool,
    expected_route: str,
    key: AnswerKey,
    key_facts: Sequence[str] = (),
    degenerate: bool = False,
) -> Judgement:
    """One answer's verdict and the reason, in words for the report."""
    if expected_route == "escalate":
        if handed_off:
            return Judgement("right", "handed to a person, as needed")
        return Judgement("wrong", "needed a person, got a bot answer (missed escalation)")
    if handed_off:
        return Judgement("handed_off", "handed off" + ("" if key.answerable else " (nothing published answers it)"))
    if degenerate:
        return Judgement("wrong", "degenerate (repeats itself)")
    text = normalize_for_match(answer)
    rejected = [phrase for phrase in key.reject if contains_phrase(text, phrase)]
    if rejected:
        return Judgement("wrong", f"says {rejected[0]!r}")
    groups = key.accept or tuple((fact,) for fact in key_facts)
    if groups:
        for group in groups:
            if all(contains_phrase(text, phrase) for phrase in group):
                return Judgement("right", "states " + " + ".join(repr(p) for p in group))
        return Judgement("wrong", "states none of " + ", ".join(" + ".join(repr(p) for p in g) for g in groups[:4]))
    if not key.answerable:
        return Judgement("wrong", "answered, but nothing published answers it")
    return Judgement("unjudged", "no accept/reject keys")


@dataclass(frozen=True)
class Tally:
    """Verdict counts over some results, and the two rates a support team reads first."""

    items: int
    should_answer: int  # questions a bot should answer (not expected to escalate)
    answerable: int  # ... of which something published or written by staff answers
    right: int
    wrong: int
    handed_off: int
    unjudged: int
    answered: int  # answers given (not handed off), escalation questions included

    @property
    def resolution_rate(self) -> float | None:
        """Right answers among the questions a bot should answer."""
        return round(self.right_answers / self.should_answer, 4) if self.should_answer else None

    @property
    def wrong_rate(self) -> float | None:
        """Wrong answers among the answers given (a missed escalation is a wrong answer)."""
        return round(self.wrong / self.answered, 4) if self.answered else None

    right_answers: int = 0  # right verdicts that were answers (a right hand-off is not a resolution)
    right_answerable: int = 0  # ... to questions something published or written by staff answers

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "should_answer": self.should_answer,
            "answerable": self.answerable,
            "right": self.right,
            "right_answers": self.right_answers,
            "wrong": self.wrong,
            "handed_off": self.handed_off,
            "unjudged": self.unjudged,
            "answered": self.answered,
            "resolution_rate": self.resolution_rate,
            "resolution_answerable": round(self.right_answerable / self.answerable, 4) if self.answerable else None,
            "wrong_rate": self.wrong_rate,
        }


def tally(results: Iterable[Any]) -> Tally:
    """Count verdicts over results carrying expected_route, verdict, route and answerable."""
    rows = list(results)
    should = [r for r in rows if r.expected_route != "escalate"]
    handed = [r for r in rows if r.route == "escalate"]
    return Tally(
        items=len(rows),
        should_answer=len(should),
        answerable=sum(bool(getattr(r, "answerable", True)) for r in should),
        right=sum(r.verdict == "right" for r in rows),
        wrong=sum(r.verdict == "wrong" for r in rows),
        handed_off=len(handed),
        unjudged=sum(r.verdict == "unjudged" for r in rows),
        answered=len(rows) - len(handed),
        right_answers=sum(r.verdict == "right" and r.route != "escalate" for r in should),
        right_answerable=sum(r.verdict == "right" and r.route != "escalate" and getattr(r, "answerable", True)
                             for r in should),
    )
