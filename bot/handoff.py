"""Answer or hand off: one decision for every route, kind of answer and follow-up.

A wrong answer costs a shop more than an honest hand-off: a customer who follows it kills a plant
or pays a fee they were told they would not. So every answer an answerer drafts carries its
evidence (`Draft.evidence`, on its kind's own scale: a policy unit's lead score, an expert
entry's similarity), and the pipeline shows it only when the evidence reaches the threshold of
its kind; otherwise the question goes to a person with a "no checked answer yet" message.

The thresholds are not set by hand. `supportbot eval --calibrate FILE` answers a tuning set with
the gate open, judges every answer (`bot.evaluation.judge`) and writes each answer's kind,
evidence and verdict to FILE; at start the gate picks, per kind, the lowest threshold at which
the answers of that kind would have been wrong at most `answering.wrong_answer_budget` of the
time (so each route and the whole bot stay within it too). Lower the budget and more questions
go to people; raise it and more get an answer. A kind the calibration never saw is answered
(its answerer's own checks still apply); a kind whose answers never met the budget is never
shown. `answering.thresholds` overrides a kind's threshold, for a shop that measured its own.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import BotError

log = logging.getLogger(__name__)

CALIBRATION_FORMAT = "supportbot-calibration/1"
NEVER = math.inf  # a kind whose answers never met the budget


class CalibrationError(BotError):
    """The calibration file cannot be read (the message says which file and why)."""


@dataclass(frozen=True)
class Record:
    """One judged draft of a calibration run."""

    kind: str  # "<route>/<kind>", e.g. "retrieval/policy", "domain/similar"
    evidence: float
    verdict: str  # right | wrong (hand-offs and unjudged answers are not records)
    item: str = ""  # the test item it answered
    rank: int = 0  # 0: the answerer's answer; 1, 2: the alternatives shown when those before are held back


def choose_threshold(records: Iterable[Record], budget: float) -> float:
    """The lowest evidence threshold whose answers were wrong at most `budget` of the time.

    Lowering a threshold only adds answers, right and wrong, so the lowest one within the budget
    answers the most questions right. Below the weakest evidence the tuning set holds nothing is
    known, so nothing weaker is answered; NEVER when no threshold keeps within the budget."""
    rows = sorted(((r.evidence, r.verdict) for r in records if r.verdict in ("right", "wrong")), reverse=True)
    chosen = NEVER
    right = wrong = 0
    index = 0
    while index < len(rows):
        evidence = rows[index][0]
        while index < len(rows) and rows[index][0] == evidence:  # ties share one threshold
            right += rows[index][1] == "right"
            wrong += rows[index][1] == "wrong"
            index += 1
        if right and wrong <= budget * (right + wrong):
            chosen = evidence
    return chosen


def choose_thresholds(records: Iterable[Record], budget: float) -> dict[str, float]:
    """A threshold per kind. An alternative (an excerpt after a similar answer) is shown only when
    the drafts before it were held back, so its threshold is chosen on those questions alone: kinds
    are settled in the order of their earliest rank, each on the records whose earlier drafts
    fall below the thresholds already chosen."""
    rows = list(records)
    by_item: dict[str, list[Record]] = {}
    for record in rows:
        by_item.setdefault(record.item, []).append(record)
    order = sorted({r.kind for r in rows}, key=lambda kind: (min(r.rank for r in rows if r.kind == kind), kind))
    thresholds: dict[str, float] = {}
    for kind in order:
        eligible = [
            r for r in rows if r.kind == kind and all(
                e.evidence < thresholds.get(e.kind, -math.inf) for e in by_item[r.item] if e.rank < r.rank)
        ]
        thresholds[kind] = choose_threshold(eligible, budget)
    return dict(sorted(thresholds.items()))


def load_calibration(path: Path) -> list[Record]:
    """The records of a calibration file; a missing file is an empty calibration (said once in the log)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        log.warning("no answer calibration at %s: every answer with evidence is shown (run "
                    "`supportbot eval TUNING.jsonl --calibrate %s` to choose thresholds)", path, path)
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"answering.calibration_file: cannot read {path} ({exc}); fix it or run "
                               f"`supportbot eval TUNING.jsonl --calibrate {path}` again") from None
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT or not isinstance(
            data.get("records"), list):
        raise CalibrationError(f"answering.calibration_file: {path} is not a calibration written by "
                               f"`supportbot eval --calibrate` ({CALIBRATION_FORMAT})")
    records = []
    for row in data["records"]:
        try:
            records.append(Record(str(row["kind"]), float(row["evidence"]), str(row["verdict"]),
                                  str(row.get("item", "")), int(row.get("rank", 0))))
        except (KeyError, TypeError, ValueError):
            raise CalibrationError(f"answering.calibration_file: {path} holds a malformed record {row!r}") from None
    return records


def calibration_document(records: list[Record], sources: list[str], created: str) -> dict[str, Any]:
    """What `--calibrate` writes: the records and where they came from; thresholds are derived at start."""
    return {
        "format": CALIBRATION_FORMAT,
        "created": created,
        "sources": sources,
        "records": [{"item": r.item, "rank": r.rank, "kind": r.kind, "evidence": round(r.evidence, 4),
                     "verdict": r.verdict} for r in records],
    }


@dataclass(frozen=True)
class AnswerGate:
    """Per kind, the evidence an answer needs to be shown (`thresholds`), and the budget they were chosen for."""

    thresholds: Mapping[str, float] = field(default_factory=dict)
    budget: float = 0.05

    @classmethod
    def open(cls) -> AnswerGate:
        """Every answer passes: how a calibration run sees what each answerer would say."""
        return cls({}, 1.0)

    @classmethod
    def from_records(cls, records: Iterable[Record], budget: float,
                     overrides: Mapping[str, float] | None = None) -> AnswerGate:
        thresholds = choose_thresholds(records, budget)
        thresholds.update(overrides or {})
        return cls(thresholds, budget)

    def threshold(self, route: str, kind: str) -> float | None:
        return self.thresholds.get(f"{route}/{kind or '-'}")

    def shortfall(self, route: str, kind: str, evidence: float | None) -> str:
        """Why an answer of this kind with this evidence must not be shown ("" when it may be)."""
        if evidence is None:
            return ""
        needed = self.threshold(route, kind)
        if needed is None or evidence >= needed:
            return ""
        if needed == NEVER:
            return (f"{route}/{kind} answers were wrong more than {self.budget:.0%} of the time at every "
                    "evidence level on the tuning set, so none is shown")
        return f"evidence {evidence:.2f} is below the {needed:.2f} a {route}/{kind} answer needs"

    def describe(self) -> list[str]:
        """One line per kind, for `supportbot config check` and the docs."""
        return [f"{kind}: " + ("never shown" if value == NEVER else f"evidence >= {value:.3f}")
                for kind, value in sorted(self.thresholds.items())]
