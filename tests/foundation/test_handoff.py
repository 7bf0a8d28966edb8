"""Answer or hand off: thresholds chosen for a wrong-answer budget, and the pipeline's one decision."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.handoff import (
    AnswerGate,
    CalibrationError,
    Record,
    choose_threshold,
    choose_thresholds,
    load_calibration,
)
from bot.interfaces import AskContext, Draft, PartialCallback, RouteDecision
from bot.pipeline import Pipeline


def records(kind: str, rows: str, item_prefix: str = "q") -> list[Record]:
    """'R' right, 'W' wrong, strongest evidence first: evidence 10, 9, 8, ..."""
    return [Record(kind, 10.0 - i, "right" if c == "R" else "wrong", f"{item_prefix}{i}") for i, c in enumerate(rows)]


def test_the_threshold_is_the_lowest_evidence_whose_answers_stay_within_the_budget() -> None:
    # 19 right then a wrong: at 5 % the 20th answer (1 wrong in 20) is still within budget; the next wrong is not.
    rows = records("retrieval/policy", "R" * 19 + "W" + "R" + "W" + "R" * 3)
    assert choose_threshold(rows, 0.05) == 10.0 - 20  # includes the 21st answer: 1 wrong of 21
    assert choose_threshold(rows, 0.10) == 10.0 - 24  # every answer: 2 wrong of 25 = 8 %
    assert choose_threshold(rows, 0.0) == 10.0 - 18  # no wrong answer at all: the first 19 only


def test_a_kind_wrong_at_every_level_is_never_shown_and_an_unknown_kind_is_not_gated() -> None:
    gate = AnswerGate.from_records(records("domain/generated", "WRWW"), 0.05)
    assert gate.threshold("domain", "generated") == math.inf
    assert "at every evidence level" in gate.shortfall("domain", "generated", 99.0)
    assert gate.shortfall("domain", "similar", -5.0) == "", "a kind the calibration never saw is shown"
    assert gate.shortfall("domain", "generated", None) == "", "an answer without evidence is not gated"


def test_an_alternative_is_calibrated_on_the_questions_whose_first_draft_is_held_back() -> None:
    first = [Record("domain/similar", 5.0, "right", "a"), Record("domain/similar", 4.0, "right", "b"),
             Record("domain/similar", 1.0, "wrong", "c"), Record("domain/similar", 0.5, "wrong", "d")]
    # The excerpt is right where the similar answer was shown anyway (a, b), wrong where it would be shown.
    second = [Record("domain/excerpt", 3.0, "right", "a", rank=1), Record("domain/excerpt", 3.0, "right", "b", rank=1),
              Record("domain/excerpt", 2.0, "wrong", "c", rank=1), Record("domain/excerpt", 2.0, "wrong", "d", rank=1)]
    thresholds = choose_thresholds(first + second, 0.05)
    assert thresholds["domain/similar"] == 4.0
    assert thresholds["domain/excerpt"] == math.inf, "on c and d, the questions it would answer, it is always wrong"


def test_a_broken_calibration_file_names_the_key_and_a_missing_one_gates_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "cal.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(CalibrationError, match="answering.calibration_file"):
        load_calibration(broken)
    broken.write_text(json.dumps({"format": "something else"}), encoding="utf-8")
    with pytest.raises(CalibrationError, match="not a calibration"):
        load_calibration(broken)
    assert load_calibration(tmp_path / "missing.json") == []


class _Router:
    def __init__(self, route: str = "domain") -> None:
        self.route = route

    def decide(self, question: str) -> RouteDecision:
        return RouteDecision(route=self.route, confidence=0.9, reason="scripted")  # type: ignore[arg-type]


class _Scripted:
    route = "domain"

    def __init__(self, drafts: dict[str, Draft]) -> None:
        self.drafts = drafts

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        return self.drafts[question.split(" (")[0]]


GATE = AnswerGate({"domain/similar": 2.0, "domain/excerpt": 1.0}, 0.05)


def _pipeline(settings: Settings, store: ConversationStore, drafts: dict[str, Draft]) -> Pipeline:
    return Pipeline.from_settings(settings, store, _Router(), {"domain": _Scripted(drafts),
                                                             "escalate": EscalationAnswerer("Rare Roots")}, gate=GATE)


def test_a_weak_answer_is_handed_off_as_no_checked_answer_and_staff_see_what_was_found(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    weak = Draft(text="Our team answered a similar question, \u201cWhat light does a Phalaenopsis need?\u201d: …",
                 kind="similar", evidence=0.4, found="expert entry \u201cWhat light does a Phalaenopsis need?\u201d")
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        answer = _pipeline(settings_factory(), store, {"Why is my Monstera drooping?": weak}).answer(
            "Why is my Monstera drooping?", AskContext(channel="slack", user="U1", conversation_key="C:1"))
        turn = store.get_turn(answer.turn_id or 0)
    finally:
        store.close()
    assert (answer.route, answer.kind) == ("escalate", "no_answer")
    assert answer.text == "I don't have a checked answer for that yet, so I've asked our plant team; they will reply here."
    assert "What light does a Phalaenopsis need?" not in answer.text, "the held-back draft never reaches the customer"
    assert "evidence 0.40 is below the 2.00" in answer.handoff_note and "would have said (similar)" in answer.handoff_note
    assert turn is not None and turn.answer_kind == "no_answer" and turn.handoff_note == answer.handoff_note


def test_the_next_draft_is_shown_when_the_first_is_held_back(settings_factory: Callable[..., Settings],
                                                             tmp_path: Path) -> None:
    excerpt = Draft(text="From our team's answer to \u201cHow often should I water a Masdevallia orchid?\u201d: …",
                    kind="excerpt", evidence=1.5)
    first = Draft(text="similar", kind="similar", evidence=1.0, alternatives=(excerpt,))
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        answer = _pipeline(settings_factory(), store, {"q": first}).answer("q")
    finally:
        store.close()
    assert (answer.route, answer.kind, answer.text) == ("domain", "excerpt", excerpt.text)
    assert [(c["kind"], c["shown"]) for c in answer.considered] == [("similar", False), ("excerpt", True)]


def test_a_routed_escalation_keeps_the_escalation_text(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        pipeline = Pipeline.from_settings(settings_factory(), store, _Router("escalate"),
                                          {"escalate": EscalationAnswerer("Rare Roots")}, gate=GATE)
        answer = pipeline.answer("My orchid arrived dead, refund me")
    finally:
        store.close()
    assert answer.kind == "escalation" and "passed this to a person" in answer.text


def test_a_follow_up_never_gets_the_previous_answer_again(settings_factory: Callable[..., Settings],
                                                          tmp_path: Path) -> None:
    same = Draft(text="We ship to the United States and Canada only.", kind="policy", evidence=5.0)

    class Policy:
        route = "retrieval"

        def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
            return same

    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    ctx = AskContext(channel="slack", user="U1", conversation_key="C:2")
    try:
        pipeline = Pipeline.from_settings(settings_factory(), store, _Router("retrieval"),
                                          {"retrieval": Policy(), "escalate": EscalationAnswerer("Rare Roots")})
        first = pipeline.answer("Do you ship to Canada?", ctx)
        again = pipeline.answer("Do you ship to Canada?", ctx)  # the same question: the same answer is fine
        follow_up = pipeline.answer("and how much is it?", ctx)
    finally:
        store.close()
    assert first.text == again.text == same.text
    assert follow_up.kind == "no_answer" and "previous answer again" in follow_up.fallback_reason
