"""An eval judges each answer right, wrong or handed off, and leads with the two rates a support lead reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.evaluation.judge import AnswerKey, contains_phrase, judge_answer, normalize_for_match, parse_key
from bot.evaluation.markdown import render_markdown
from bot.evaluation.report import compare_reports, summarize
from bot.evaluation.runner import load_testset, run_evaluation
from bot.interfaces import AskContext, Draft, PartialCallback, RouteDecision
from bot.pipeline import Pipeline


def test_a_phrase_matches_whole_words_and_numbers_only() -> None:
    text = normalize_for_match("Returns are accepted within 130 days; shipping costs $24.955 — or 3–5 days.")
    assert not contains_phrase(text, "30 days")
    assert not contains_phrase(text, "$24.95")
    assert contains_phrase(text, "3-5 days")  # an en dash reads as a hyphen
    assert contains_phrase(normalize_for_match("Keep it above 60 % humidity"), "60%")
    assert contains_phrase(normalize_for_match("It costs $29.95."), "$29.95")  # a full stop ends the number


def test_an_answer_is_right_only_with_an_accepted_fact_and_no_rejected_one() -> None:
    key = AnswerKey(accept=(("$29.95",), ("Canada", "4-7 business days")), reject=("$24.95",))

    def verdict(text: str) -> str:
        return judge_answer(text, handed_off=False, expected_route="retrieval", key=key).verdict

    assert verdict("Canada: 4-7 business days, $29.95.") == "right"
    assert verdict("Canada, all provinces: 4–7 business days.") == "right"  # every phrase of the group
    assert verdict("Delivery to Canada is quick.") == "wrong"  # half a group is not the fact
    assert verdict("Zone 3 costs $24.95, Canada $29.95.") == "wrong"  # the neighbouring fact makes it wrong
    assert judge_answer("…", handed_off=True, expected_route="retrieval", key=key).verdict == "handed_off"


def test_an_expected_escalation_is_right_only_when_handed_off() -> None:
    assert judge_answer("A person will follow up.", handed_off=True, expected_route="escalate",
                        key=AnswerKey()).verdict == "right"
    missed = judge_answer("Refunds take 5 days.", handed_off=False, expected_route="escalate", key=AnswerKey())
    assert missed.verdict == "wrong" and "missed escalation" in missed.why


def test_an_answer_to_a_question_nothing_answers_is_wrong_and_a_loop_is_never_right() -> None:
    nothing = AnswerKey(answerable=False)
    assert judge_answer("Water your Monstera daily.", handed_off=False, expected_route="domain",
                        key=nothing).verdict == "wrong"
    loop = judge_answer("every two to four days " * 10, handed_off=False, expected_route="domain",
                        key=AnswerKey(accept=(("every two to four days",),)), degenerate=True)
    assert loop.verdict == "wrong"
    # Without keys, a key fact is the accepted phrase; without either, the answer is unjudged.
    assert judge_answer("It costs $3.50.", handed_off=False, expected_route="retrieval", key=AnswerKey(),
                        key_facts=("$3.50",)).verdict == "right"
    assert judge_answer("It costs $3.50.", handed_off=False, expected_route="retrieval",
                        key=AnswerKey()).verdict == "unjudged"


def test_malformed_keys_name_the_field() -> None:
    with pytest.raises(ValueError, match="'accept'"):
        parse_key({"accept": [["$5", 3]]})
    with pytest.raises(ValueError, match="'reject'"):
        parse_key({"reject": {"a": 1}})
    with pytest.raises(ValueError, match="'answerable'"):
        parse_key({"answerable": "no"})
    assert parse_key({"accept": "$5"}).accept == (("$5",),)


class _Router:
    def __init__(self, routes: dict[str, str]) -> None:
        self.routes = routes

    def decide(self, question: str) -> RouteDecision:
        return RouteDecision(route=self.routes.get(question, "retrieval"), confidence=0.9,  # type: ignore[arg-type]
                             reason="scripted")


class _Answerer:
    def __init__(self, route: str, texts: dict[str, str], kind: str = "") -> None:
        self.route, self.texts, self.kind = route, texts, kind

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        return Draft(text=self.texts.get(question, "We ship to the United States and Canada only."), kind=self.kind)


SET = [
    {"id": "canada", "question": "How much is shipping to Canada?", "expected_route": "retrieval",
     "accept": ["$29.95"], "reject": ["$24.95"]},
    {"id": "hawaii", "question": "How much is shipping to Hawaii?", "expected_route": "retrieval",
     "accept": ["$24.95"]},
    {"id": "monstera", "question": "How do I water a Monstera?", "expected_route": "domain", "answerable": False},
    {"id": "dead", "question": "My plant arrived dead, refund me", "expected_route": "escalate"},
    {"id": "conv", "turns": [
        {"question": "Do you ship to Canada?", "expected_route": "retrieval", "accept": ["Canada"]},
        {"question": "And how much is it?", "expected_route": "retrieval", "accept": ["$29.95"], "depends": True},
    ]},
]


def _judged_report(tmp_path: Path, settings: Settings, store: ConversationStore, texts: dict[str, str]) -> dict:
    path = tmp_path / "judged.jsonl"
    path.write_text("\n".join(json.dumps(item) for item in SET) + "\n", encoding="utf-8")
    items, problems = load_testset(path)
    from bot.answerers.escalation import EscalationAnswerer

    pipeline = Pipeline.from_settings(settings, store, _Router({"How do I water a Monstera?": "domain",
                                                                "My plant arrived dead, refund me": "escalate"}), {
        "retrieval": _Answerer("retrieval", texts, kind="policy"),
        "domain": _Answerer("domain", texts, kind="similar"),
        "escalate": EscalationAnswerer("Rare Roots"),
    })
    results = run_evaluation(pipeline, items)
    return summarize(results, problems, testset=str(path), created="2026-12-07T00:00:00+00:00",
                     command="supportbot eval judged.jsonl", degenerate_threshold=0.3)


def test_the_report_leads_with_resolution_and_wrong_answer_rates_and_lists_wrong_answers_first(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    report = _judged_report(tmp_path, eval_settings, eval_store, {
        "How much is shipping to Canada?": "Canada: $29.95, 4-7 business days.",
        "How much is shipping to Hawaii?": "Canada: $29.95.",  # the neighbouring row: wrong
        "How do I water a Monstera?": "Water it every two to four days.",  # nothing published says so: wrong
        "And how much is it?": "We ship to the United States and Canada only.",  # the previous answer again
    })

    judged = report["judged"]["all"]
    # 5 questions a bot should answer (all but the escalation): canada and turn 1 are right; the
    # follow-up would have got turn 1's answer again, so it was handed off instead.
    assert (judged["should_answer"], judged["right_answers"], judged["wrong"], judged["answered"]) == (5, 2, 2, 4)
    assert judged["resolution_rate"] == 0.4 and judged["wrong_rate"] == 0.5
    assert judged["handed_off"] == 2  # the dead plant (a right hand-off) and the follow-up
    assert report["judged"]["by_kind"]["domain/similar"]["wrong"] == 1
    follow_ups = report["conversations"]["follow_ups"]["with_context"]
    assert follow_ups["handed_off"] == 1 and follow_ups["repeated_previous"] == 0

    markdown = render_markdown(report, {}, None)
    assert markdown.index("## Right, wrong or handed off") < markdown.index("## Other figures")
    wrong_section = markdown[markdown.index("### Wrong answers"):]
    assert "How much is shipping to Hawaii?" in wrong_section and "states none of '$24.95'" in wrong_section


def test_compare_shows_resolution_and_wrong_rate_and_what_became_wrong_first(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    right = {"How much is shipping to Canada?": "$29.95", "How much is shipping to Hawaii?": "$24.95",
             "And how much is it?": "$29.95"}
    old = _judged_report(tmp_path, eval_settings, eval_store, right)
    new = _judged_report(tmp_path, eval_settings, eval_store, {**right, "How much is shipping to Canada?": "$24.95"})

    comparison = compare_reports(old, new)
    metrics = {m["metric"]: m for m in comparison["metrics"]}
    assert metrics["resolution rate"]["verdict"] == "worse" and metrics["wrong-answer rate"]["verdict"] == "worse"
    assert comparison["changed_items"][0]["question"] == "How much is shipping to Canada?"
    assert "right → wrong" in comparison["changed_items"][0]["changes"]


def test_a_calibration_run_gives_thresholds_that_hold_back_what_was_wrong(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    """Judged with the decision open, the weak (wrong) answers fall below the threshold the budget
    gives, and a bot started with that calibration hands them off."""
    from bot.answerers.escalation import EscalationAnswerer
    from bot.evaluation.calibration import calibration_records, merge_calibration
    from bot.factory import answer_gate
    from bot.handoff import AnswerGate

    class Graded:
        route = "retrieval"

        def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
            strong = "Canada" in question
            return Draft(text="Canada: $29.95." if strong else "Canada: $29.95.", kind="policy",
                         evidence=3.0 if strong else 0.5)

    items_path = tmp_path / "tuning.jsonl"
    items_path.write_text("\n".join(json.dumps(row) for row in [
        {"id": "ca", "question": "Shipping to Canada?", "expected_route": "retrieval", "accept": ["$29.95"]},
        {"id": "hi", "question": "Shipping to Hawaii?", "expected_route": "retrieval", "accept": ["$24.95"]},
    ]) + "\n", encoding="utf-8")
    items, _ = load_testset(items_path)
    pipeline = Pipeline.from_settings(eval_settings, eval_store, _Router({}), {
        "retrieval": Graded(), "escalate": EscalationAnswerer("Rare Roots")}, gate=AnswerGate.open())
    records = calibration_records(run_evaluation(pipeline, items))
    assert [(r.kind, r.evidence, r.verdict) for r in records] == [("retrieval/policy", 3.0, "right"),
                                                                   ("retrieval/policy", 0.5, "wrong")]
    calibration = tmp_path / "cal.json"
    merge_calibration(calibration, records, str(items_path), "2026-12-07T00:00:00+00:00")
    settings = eval_settings.model_copy(update={"answering": eval_settings.answering.model_copy(
        update={"calibration_file": calibration})})
    gated = Pipeline.from_settings(settings, eval_store, _Router({}), {
        "retrieval": Graded(), "escalate": EscalationAnswerer("Rare Roots")}, gate=answer_gate(settings))
    assert gated.answer("Shipping to Canada?").route == "retrieval"
    assert gated.answer("Shipping to Hawaii?").kind == "no_answer"
