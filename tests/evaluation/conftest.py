"""A real Pipeline whose router and answerers follow a script, and a tiny test set for it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import AskContext, Draft, PartialCallback, RouteDecision, Source
from bot.pipeline import Pipeline

LOOP = "Repot in spring. " + "Genetic Testing Registry: orchid. " * 12


class ScriptedRouter:
    def __init__(self, routes: dict[str, tuple[str, float]], version: str) -> None:
        self.routes = routes
        self.version = version

    def decide(self, question: str) -> RouteDecision:
        route, confidence = self.routes[question]
        return RouteDecision(route=route, confidence=confidence, reason="scripted",  # type: ignore[arg-type]
                             router_version=self.version)


class ScriptedAnswerer:
    def __init__(self, route: str, answers: dict[str, tuple[str, list[Source]]], version: str) -> None:
        self.route = route
        self.answers = answers
        self.version = version
        self.calls: list[str] = []  # "warm_up", then the questions, in order

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        self.calls.append(question)
        text, sources = self.answers.get(question, (f"{self.route} answer", []))
        return Draft(text=text, sources=sources, model_version=self.version)

    def warm_up(self) -> None:
        self.calls.append("warm_up")


# question: (expected route, reference, expected source)  ->  how the scripted bot answers
TESTSET: list[dict[str, Any]] = [
    {"id": "water", "question": "How often should I water a Masdevallia?", "expected_route": "domain",
     "reference": "Water a Masdevallia every 2 to 3 days and never let it dry out."},
    {"id": "light", "question": "How much light does a Nepenthes need?", "expected_route": "domain",
     "reference": "Bright indirect light, at least 4 hours a day."},
    {"id": "ship", "question": "When do you ship live plants to Canada?", "expected_route": "retrieval",
     "expected_source": "shipping.md"},
    {"id": "return", "question": "Can I return a plant after 30 days?", "expected_route": "retrieval",
     "expected_source": ["returns.md", "arrival-guarantee.md"]},
    {"id": "dead", "question": "My orchid arrived dead and I want my money back", "expected_route": "escalate"},
    {"id": "angry", "question": "This is the third time my order is late!!", "expected_route": "escalate",
     "reference": "I'm sorry, a person will follow up."},
    {"id": "soil", "question": "What soil for a Lithops?", "expected_route": "domain",
     "reference": "A gritty mineral mix with little organic matter."},
]


def scripted_pipeline(settings: Settings, store: ConversationStore, *, improved: bool = False) -> Pipeline:
    """Version 1 makes the mistakes the tests count; `improved` (version 2) fixes two of them."""
    q = {item["id"]: item["question"] for item in TESTSET}
    routes: dict[str, tuple[str, float]] = {
        q["water"]: ("domain", 0.9),
        q["light"]: ("domain", 0.9) if improved else ("retrieval", 0.7),  # misrouted in v1
        q["ship"]: ("retrieval", 0.8),
        q["return"]: ("retrieval", 0.8),
        q["dead"]: ("escalate", 0.95),
        q["angry"]: ("escalate", 0.9) if improved else ("domain", 0.6),  # missed escalation in v1
        q["soil"]: ("domain", 0.3),  # below the 0.55 threshold: escalated though it need not be
    }
    version = "v2" if improved else "v1"
    domain = ScriptedAnswerer("domain", {
        q["water"]: ("Water a Masdevallia every 2 to 3 days and never let it dry out.", []),
        q["light"]: ("Bright indirect light, at least 4 hours a day.", []),
        q["angry"]: (LOOP, []),
    }, f"adapter-{version}")
    retrieval = ScriptedAnswerer("retrieval", {
        q["ship"]: ("We ship live plants from March to October.",
                    [Source(title="Shipping", path="/srv/rareroots/knowledge/shipping.md")]),
        q["return"]: ("Prices start at 12 EUR.", [Source(title="Pricing", path="knowledge/pricing.md")]),
        q["light"]: ("See our shipping policy.", [Source(title="Shipping", path="knowledge/shipping.md")]),
    }, "extractive")
    return Pipeline.from_settings(
        settings,
        store,
        ScriptedRouter(routes, f"router-{version}"),
        {"domain": domain, "retrieval": retrieval, "escalate": EscalationAnswerer(settings.app.company_name)},
    )


def write_testset(path: Path, rows: list[Any], extra_lines: list[str] | None = None) -> Path:
    lines = [json.dumps(row) if not isinstance(row, str) else row for row in rows]
    path.write_text("\n".join(lines + (extra_lines or [])) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def eval_settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def eval_store(eval_settings: Settings) -> Iterator[ConversationStore]:
    store = ConversationStore.open(eval_settings.database_url)
    yield store
    store.close()
