"""Routing decisions a customer notices: the right route on clear questions, escalation when unsure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import AskContext, Draft
from bot.pipeline import Pipeline
from bot.registry import router_registry
from bot.router import TopicRouter, build_router
from training.router_training import train_router

# Questions written for these tests: none of them is in data/seed_routes.yaml.
CLEAR = {
    "domain": ["How often should I water my Nepenthes?", "Why are the leaves of my Drosera turning red?",
               "what pot size for a baby lithops"],
    "retrieval": ["Do you deliver to Germany?", "Can I pay with bitcoin?", "how much is shipping to texas"],
    "escalate": ["My flytrap arrived dead, I want a refund", "Where is my package? order 5531",
                 "I want to talk to someone"],
}
OFF_TOPIC = ["What's the capital of France?", "Write me a poem about the sea", "How do I fix my car's brakes?"]


class RecordingAnswerer:
    def __init__(self, route: str) -> None:
        self.route = route
        self.questions: list[str] = []

    def answer(self, question: str, ctx: AskContext, on_partial: Callable[[str], None] | None = None) -> Draft:
        self.questions.append(question)
        return Draft(text=f"{self.route} answer")


@pytest.mark.parametrize("route", ["domain", "retrieval", "escalate"])
def test_fresh_install_routes_clear_questions_zero_shot(route: str, router_settings: Settings,
                                                        cached_embedder: Any) -> None:
    router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder)
    assert router.version.startswith("zero-shot:")
    for question in CLEAR[route]:
        decision = router.decide(question)
        assert decision.route == route, (question, decision)
        assert "zero-shot" in decision.reason


def test_trained_router_routes_clear_questions_and_says_which_topic(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore, fake_kb: Any
) -> None:
    train_router(router_settings, embedder=cached_embedder, store=store, knowledge=fake_kb)
    router = build_router(router_settings, embedder=cached_embedder, knowledge=fake_kb, store=store)
    assert router.version == "v0001"
    for route, questions in CLEAR.items():
        for question in questions:
            decision = router.decide(question)
            assert decision.route == route, (question, decision)
            assert decision.confidence == pytest.approx(decision.probabilities[route], abs=1e-3)
            assert sum(decision.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
            assert decision.router_version == "v0001"
    shipping = router.decide("Do you deliver to Germany?")
    assert "topic 'shipping_zones_and_times' (retrieval)" in shipping.reason
    assert "best KB score 0.82" in shipping.reason


@pytest.mark.parametrize("trained", [False, True], ids=["zero-shot", "trained"])
def test_off_topic_questions_are_escalated_not_answered(
    trained: bool, router_settings: Settings, cached_embedder: Any, store: ConversationStore
) -> None:
    if trained:
        train_router(router_settings, embedder=cached_embedder, store=store)
    answerers = {r: RecordingAnswerer(r) for r in ("domain", "retrieval")}
    pipeline = Pipeline.from_settings(router_settings, store, TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder),
                        {**answerers, "escalate": EscalationAnswerer(router_settings.app.company_name)})
    for question in OFF_TOPIC:
        answer = pipeline.answer(question)
        assert answer.route == "escalate", (question, answer)
        assert "out of scope" in answer.reason
    assert answerers["domain"].questions == [] and answerers["retrieval"].questions == []
    in_scope = pipeline.answer("How often should I water my Nepenthes?")
    assert in_scope.route == "domain" and in_scope.text == "domain answer"


def test_route_below_its_threshold_goes_to_escalation(
    settings_factory: Callable[..., Settings], router_settings: Settings, cached_embedder: Any,
    store: ConversationStore,
) -> None:
    """A question the router is only fairly sure of is answered at the default thresholds but
    handed to a person when the team raises the domain threshold above its probability."""
    question = "Is my orchid going to survive in my bathroom?"
    train_router(router_settings, embedder=cached_embedder, store=store)
    decision = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder).decide(question)
    assert decision.route == "domain"
    strict = settings_factory(**{
        "router.seed_file": str(router_settings.router.seed_file),
        "router.thresholds": {"domain": min(0.999, decision.confidence + 0.001)},
    })
    domain = RecordingAnswerer("domain")
    for settings, expected in ((router_settings, "domain"), (strict, "escalate")):
        pipeline = Pipeline.from_settings(settings, store, TopicRouter(settings.router, router_registry(settings), embedder=cached_embedder),
                            {"domain": domain, "escalate": EscalationAnswerer(settings.app.company_name)})
        answer = pipeline.answer(question)
        assert answer.route == expected
    assert "below its threshold" in answer.fallback_reason
    assert answer.router_version == "v0001"


def test_explain_names_topics_neighbours_and_signals(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore, fake_kb: Any
) -> None:
    train_router(router_settings, embedder=cached_embedder, store=store, knowledge=fake_kb)
    router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder, knowledge=fake_kb)
    details = router.explain("How long does delivery to Toronto take?")
    assert details["route"] == "retrieval"
    assert details["version"] == "v0001" and details["zero_shot"] is False
    assert details["top_topics"][0]["topic"] == "shipping_zones_and_times"
    assert 0.0 < details["top_topics"][0]["similarity"] <= 1.0
    assert details["nearest_examples"][0]["topic"] == "shipping_zones_and_times"
    assert set(details["signals"]) >= {"kb_best_score", "kb_score_margin", "nearest_similarity",
                                       "domain_similarity"}
    assert details["signals"]["kb_best_score"] == pytest.approx(0.82)
    assert details["signals"]["kb_score_margin"] == pytest.approx(0.41)


def test_knowledge_base_outage_does_not_stop_routing(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore, fake_kb: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    train_router(router_settings, embedder=cached_embedder, store=store, knowledge=fake_kb)
    fake_kb.fail = True
    router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder, knowledge=fake_kb)
    with caplog.at_level("WARNING", logger="bot.router"):
        first = router.decide("Do you deliver to Germany?")
        second = router.decide("How often should I water my Nepenthes?")
    assert (first.route, second.route) == ("retrieval", "domain")
    assert "kb_best_score" not in first.signals
    assert sum("knowledge search failed" in r.message for r in caplog.records) == 1


def test_question_share_counts_the_sentences_that_ask() -> None:
    from bot.routing.classifier import text_signals

    shares = text_signals([
        "Can I return a pot I never used?",
        "My order came crushed and the plant is dead.",
        "I changed my mind about the Lithops. Can I still send it back?",
        "how long does shipping to Oregon take",  # asks without a question mark
        "I want my money back! This is the third dead orchid.",
    ])["question_share"]
    assert shares.tolist() == [1.0, 0.0, 0.5, 1.0, 0.0]


def test_a_trained_router_reads_the_question_form(router_settings: Settings, cached_embedder: Any,
                                                  store: ConversationStore) -> None:
    """The calibrator of a version trained now learns from the form: the same words asked as
    a question lean further from a person than when told as a complaint."""
    train_router(router_settings, embedder=cached_embedder, store=store)
    router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder)
    assert "question_share" in router.model.calibrators["without_kb"].signals
    asked = router.decide("Can I send back the pot that came with my order?")
    told = router.decide("I want to send back the pot that came with my order.")
    assert asked.signals["question_share"] == 1.0 and told.signals["question_share"] == 0.0
    assert asked.probabilities["escalate"] < told.probabilities["escalate"]
