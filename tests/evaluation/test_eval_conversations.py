"""`supportbot eval` on conversations: each follow-up is answered in its conversation and again
on its own, in one run, and the report shows both next to the first turns."""

from __future__ import annotations

import json
from pathlib import Path

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.evaluation.markdown import render_markdown
from bot.evaluation.report import summarize
from bot.evaluation.runner import load_testset, run_evaluation
from bot.interfaces import AskContext, Draft, PartialCallback, RouteDecision
from bot.pipeline import Pipeline


class KeywordRouter:
    def decide(self, question: str) -> RouteDecision:
        q = question.lower()
        if "ship" in q:
            return RouteDecision(route="retrieval", confidence=0.9, reason="shipping")
        if "water" in q:
            return RouteDecision(route="domain", confidence=0.9, reason="watering")
        return RouteDecision(route="escalate", confidence=0.6, reason="unclear")


class Policy:
    route = "retrieval"

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        q = question.lower()
        if "hawaii" in q:
            return Draft(text="Hawaii is Zone 3: $24.95." if "how much" in q else "Yes, Hawaii is in Zone 3.")
        return Draft(text="We ship to all states.")


class Care:
    route = "domain"

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        return Draft(text="Water a Lithops only when it is shrivelled.")


CONVERSATIONS = [
    {"id": "hawaii", "turns": [
        {"question": "Do you ship to Hawaii?", "expected_route": "retrieval", "reference": "Yes, Zone 3."},
        {"question": "and how much is it?", "expected_route": "retrieval", "reference": "Hawaii is Zone 3: $24.95.",
         "depends": True},
        {"question": "How often should I water a Lithops in summer?", "expected_route": "domain",
         "reference": "Water a Lithops only when it is shrivelled.", "depends": False},
    ]},
]


def test_a_conversation_test_set_reports_follow_ups_with_and_without_their_conversation(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    testset = tmp_path / "conversations.jsonl"
    lines = [json.dumps(c) for c in CONVERSATIONS] + [json.dumps({"id": "bad", "turns": []})]
    testset.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items, problems = load_testset(testset)
    assert [i.id for i in items] == ["hawaii#1", "hawaii#2", "hawaii#3"]
    assert [p.message for p in problems] == ["'turns' must be a non-empty list of questions (objects)"]

    pipeline = Pipeline.from_settings(eval_settings, eval_store, KeywordRouter(),
                        {"retrieval": Policy(), "domain": Care(), "escalate": EscalationAnswerer(eval_settings.app.company_name)})
    results = run_evaluation(pipeline, items)
    report = summarize(results, problems, testset=str(testset), created="2026-12-01T00:00:00+00:00",
                       command="supportbot eval conversations.jsonl", degenerate_threshold=0.25)

    assert report["counts"]["items"] == 3, "the answers given alone are not counted twice"
    conv = report["conversations"]
    assert conv["first_turns"]["route_accuracy"] == 1.0
    with_context, alone = conv["follow_ups"]["with_context"], conv["follow_ups"]["alone"]
    assert (with_context["route_accuracy"], alone["route_accuracy"]) == (1.0, 0.5), \
        "'and how much is it?' is policy only with the conversation; the topic change is right either way"
    assert with_context["context_used"] == 1 and alone["context_used"] == 0
    assert conv["follow_ups"]["standalone_with_context"]["route_accuracy"] == 1.0
    assert with_context["token_f1"] > alone["token_f1"]
    markdown = render_markdown(report, {}, None)
    assert "## Conversations" in markdown and "follow-ups, each on its own" in markdown
