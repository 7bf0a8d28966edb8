"""A real rasa-sdk action server on 127.0.0.1 over a pipeline of fakes, and Rasa-shaped payloads."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sanic import Sanic

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import AskContext, Draft, PartialCallback, RouteDecision, Source
from bot.pipeline import Pipeline
from bot.rasa.server import build_action_server, serve_in_thread

RASA_VERSION = "3.6.21"


class KeywordRouter:
    """Routes like a trained router would on these test questions, deterministically."""

    def decide(self, question: str) -> RouteDecision:
        q = question.lower()
        if "refund" in q or "dead" in q:
            return RouteDecision(route="escalate", confidence=0.97, reason="topic: dead plant refund")
        if "ship" in q or "return" in q:
            return RouteDecision(route="retrieval", confidence=0.91, reason="topic: shipping")
        return RouteDecision(route="domain", confidence=0.88, reason="topic: orchid care", router_version="r7")


class CannedAnswerer:
    def __init__(self, route: str, text: str, sources: list[Source] | None = None) -> None:
        self.route = route
        self.text = text
        self.sources = sources or []
        self.questions: list[str] = []
        self.warmed = False

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        self.questions.append(question)
        return Draft(text=self.text, sources=self.sources, model_version="adapter-v3")

    def warm_up(self) -> None:
        self.warmed = True


SHIPPING_SOURCE = Source(
    title="Shipping",
    path="knowledge/shipping.md",
    heading="Live-plant shipping seasons",
    url="https://rareroots.example/policies/shipping",
)
RETURNS_SOURCE = Source(title="Returns", path="knowledge/returns.md", heading="Arrival guarantee")


@dataclass
class RasaHarness:
    url: str
    client: httpx.Client
    store: ConversationStore
    pipeline: Pipeline
    domain_answerer: CannedAnswerer

    def post(self, payload: Any, **kwargs: Any) -> httpx.Response:
        return self.client.post(f"{self.url}/webhook", json=payload, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def sanic_test_mode() -> Iterator[None]:
    """Sanic rewrites its HTTP methods per app once per process unless in test mode, which is
    what lets each test start its own server."""
    before = Sanic.test_mode
    Sanic.test_mode = True
    yield
    Sanic.test_mode = before


@pytest.fixture
def rasa_settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(**{"router.fallback_order": ["escalate"]})


@pytest.fixture
def rasa_server(rasa_settings: Settings) -> Iterator[RasaHarness]:
    store = ConversationStore.open(rasa_settings.database_url)
    domain = CannedAnswerer("domain", "Water a Masdevallia every 2 to 3 days; never let it dry out.")
    pipeline = Pipeline.from_settings(
        rasa_settings,
        store,
        KeywordRouter(),
        {
            "domain": domain,
            "retrieval": CannedAnswerer(
                "retrieval",
                "We ship live plants from March to October.",
                [SHIPPING_SOURCE, RETURNS_SOURCE],
            ),
            "escalate": EscalationAnswerer(rasa_settings.app.company_name),
        },
    )
    app = build_action_server(rasa_settings, pipeline, store)
    try:
        with serve_in_thread(app) as url, httpx.Client(timeout=30) as client:
            yield RasaHarness(url, client, store, pipeline, domain)
    finally:
        store.close()


DOMAIN = {
    "version": "3.1",
    "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True},
    "intents": ["greet", "ask_support", "affirm", "deny"],
    "entities": [],
    "slots": {
        "support_route": {"type": "categorical", "influence_conversation": True,
                          "values": ["domain", "retrieval", "escalate"], "mappings": [{"type": "custom"}]},
        "support_confidence": {"type": "float", "influence_conversation": False,
                               "min_value": 0.0, "max_value": 1.0, "mappings": [{"type": "custom"}]},
    },
    "responses": {"utter_greet": [{"text": "Hi! Ask me about your plants."}]},
    "actions": ["action_support_answer", "action_support_feedback"],
    "forms": {},
    "e2e_actions": [],
}


def webhook_payload(
    action: str,
    sender_id: str,
    text: str,
    intent: str = "ask_support",
    *,
    slots: dict[str, Any] | None = None,
    earlier: list[str] | None = None,
) -> dict[str, Any]:
    """The body Rasa's RemoteAction posts to the action endpoint (tracker at verbosity ALL);
    `earlier`: the sender's user messages before this one, oldest first."""
    now = time.time()
    message_id = uuid.uuid4().hex
    parse_data = {
        "intent": {"name": intent, "confidence": 0.93},
        "entities": [],
        "text": text,
        "message_id": message_id,
        "metadata": {},
        "intent_ranking": [{"name": intent, "confidence": 0.93}],
    }
    events = [
        {"event": "action", "timestamp": now - 3, "name": "action_session_start", "policy": None,
         "confidence": 1.0, "action_text": None, "hide_rule_turn": False},
        {"event": "session_started", "timestamp": now - 3},
        {"event": "action", "timestamp": now - 3, "name": "action_listen", "policy": None,
         "confidence": None, "action_text": None, "hide_rule_turn": False},
        *[event for i, said in enumerate(earlier or [])
          for event in ({"event": "user", "timestamp": now - 2 + i * 0.01, "text": said, "parse_data": {},
                         "input_channel": "rest", "message_id": uuid.uuid4().hex, "metadata": {}},
                        {"event": "bot", "timestamp": now - 2 + i * 0.01 + 0.005, "text": "(an answer)"})],
        {"event": "user", "timestamp": now - 1, "text": text, "parse_data": parse_data,
         "input_channel": "rest", "message_id": message_id, "metadata": {}},
        {"event": "user_featurization", "timestamp": now - 1, "use_text_for_featurization": False},
    ]
    tracker = {
        "sender_id": sender_id,
        "slots": {"support_route": None, "support_confidence": None, **(slots or {})},
        "latest_message": parse_data,
        "latest_event_time": now - 1,
        "followup_action": None,
        "paused": False,
        "events": events,
        "latest_input_channel": "rest",
        "active_loop": {},
        "latest_action": {"action_name": "action_listen"},
        "latest_action_name": "action_listen",
    }
    return {
        "next_action": action,
        "sender_id": sender_id,
        "tracker": tracker,
        "domain": DOMAIN,
        "version": RASA_VERSION,
        "domain_digest": "d41d8cd98f00b204e9800998ecf8427e",
    }
