"""The pipeline routes, falls back when an answerer cannot answer, and logs every turn."""

from __future__ import annotations

from collections.abc import Callable

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.errors import AnswererUnavailable
from bot.interfaces import AskContext, Draft, RouteDecision, Source
from bot.pipeline import Pipeline


class FixedRouter:
    def __init__(self, route: str, confidence: float) -> None:
        self.decision = RouteDecision(route=route, confidence=confidence, reason=f"test says {route}",  # type: ignore[arg-type]
                                      router_version="r1")

    def decide(self, question: str) -> RouteDecision:
        return self.decision


class CannedAnswerer:
    def __init__(self, route: str, text: str | None) -> None:
        self.route = route
        self.text = text

    def answer(self, question: str, ctx: AskContext, on_partial: Callable[[str], None] | None = None) -> Draft:
        if self.text is None:
            raise AnswererUnavailable("backend is down")
        return Draft(text=self.text, sources=[Source(title="Returns", path="returns.md")], model_version="m1")


def build(settings: Settings, route: str, confidence: float, domain_text: str | None = "Water weekly.") -> Pipeline:
    store = ConversationStore.open(settings.database_url)
    return Pipeline.from_settings(
        settings,
        store,
        FixedRouter(route, confidence),
        {
            "domain": CannedAnswerer("domain", domain_text),
            "retrieval": CannedAnswerer("retrieval", "Returns within 30 days."),
            "escalate": EscalationAnswerer(settings.app.company_name),
        },
    )


def test_confident_route_answers_and_logs(settings_factory: Callable[..., Settings]) -> None:
    pipeline = build(settings_factory(), "domain", 0.9)
    answer = pipeline.answer("How often should I water a Masdevallia?", AskContext(channel="cli", user="u1"))
    assert answer.text == "Water weekly."
    assert (answer.route, answer.confidence, answer.reason) == ("domain", 0.9, "test says domain")
    turn = pipeline.store.get_turn(answer.turn_id)  # type: ignore[arg-type]
    assert turn is not None and turn.route == "domain" and turn.router_version == "r1"


def test_low_confidence_escalates_with_reason(settings_factory: Callable[..., Settings]) -> None:
    pipeline = build(settings_factory(), "domain", 0.2)
    answer = pipeline.answer("hmm?")
    assert answer.route == "escalate"
    assert "a person" in answer.text
    assert "below its threshold" in answer.fallback_reason


def test_fallback_order_is_configurable(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(**{"router.fallback_order": ["retrieval", "escalate"]})
    pipeline = build(settings, "domain", 0.2)
    assert pipeline.answer("How do I return a plant?").route == "retrieval"


def test_unavailable_backend_falls_back_instead_of_failing(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(**{"router.fallback_order": ["retrieval"]})
    pipeline = build(settings, "domain", 0.95, domain_text=None)
    answer = pipeline.answer("How do I repot a Nepenthes?")
    assert answer.route == "retrieval"
    assert "domain: backend is down" in answer.fallback_reason
    turn = pipeline.store.get_turn(answer.turn_id)  # type: ignore[arg-type]
    assert turn is not None and "backend is down" in turn.fallback_reason


def test_fallbacks_and_escalations_are_counted_for_prometheus_by_why(settings_factory: Callable[..., Settings]) -> None:
    from bot.metrics import REGISTRY

    def count(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    settings = settings_factory(**{"router.fallback_order": ["retrieval", "escalate"]})
    before = (count("supportbot_fallbacks_total", route="domain", reason="low_confidence"),
              count("supportbot_fallbacks_total", route="domain", reason="unavailable"),
              count("supportbot_escalations_total", reason="fallback"))
    build(settings, "domain", 0.2).answer("hmm?")  # below the threshold: handed to retrieval
    build(settings, "domain", 0.9, domain_text=None).answer("Water?")  # the model is down: retrieval
    escalated = build(settings_factory(), "domain", 0.2).answer("hmm?")  # below the threshold: a person
    assert escalated.route == "escalate"
    after = (count("supportbot_fallbacks_total", route="domain", reason="low_confidence"),
             count("supportbot_fallbacks_total", route="domain", reason="unavailable"),
             count("supportbot_escalations_total", reason="fallback"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1]
