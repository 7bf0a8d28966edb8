"""Plant care in Slack with the shipped defaults: a question an expert entry answers gets that entry,
one no entry answers is handed to the plant team as "no checked answer yet", and staff are told
what the bot found and why it did not answer, in the staff channel and on App Home.

Real Bolt app over HTTP, fake Slack Web API, real Pipeline with the shipped answer-or-hand-off
thresholds, real log, MiniLM, Chroma, glossary and seed entries; only the router (fixed to domain)
and the LLM (a recording stand-in, which must never be asked) are doubles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.answerers.domain_model import DomainAnswerer
from bot.conversation_log import ConversationStore
from bot.factory import answer_gate, escalation_answerer
from bot.glossary import Glossary
from bot.interfaces import RouteDecision
from bot.pipeline import Pipeline
from bot.registry import adapter_registry
from bot.slack.app import build_app, build_services
from bot.slack.server import HttpSlackServer
from bot.testing.fake_slack import FakeSlack
from tests.memory.conftest import RecordingBackend
from tests.slack.conftest import SIGNING_SECRET, STAFF, SignedSender, fake_slack, mention  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
COVERED = "my masdevallia keeps drying out, how many times a week should i water it?"
UNCOVERED = "How do I get my Monstera to grow split leaves?"


class DomainRouter:
    def decide(self, question: str) -> RouteDecision:
        return RouteDecision(route="domain", confidence=0.9, reason="topic: plant care")


@pytest.fixture
def plant_bot(settings_factory: Callable[..., Any], make_memory: Any, fake_slack: FakeSlack,  # noqa: F811
              tmp_path: Path) -> Iterator[tuple[SignedSender, RecordingBackend, ConversationStore, Any]]:
    settings = settings_factory(
        env={"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET},
        **{"slack.api_base_url": fake_slack.url, "slack.http_host": "127.0.0.1", "slack.http_port": 0,
           "slack.staff_user_ids": [STAFF], "slack.staff_channel": "CSTAFF",
           "training.seed_dataset": str(REPO / "data" / "seed_domain.jsonl"),
           "answering.calibration_file": str(REPO / "data" / "answer_calibration.json")},
    )
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    memory = make_memory(settings, store)
    backend = RecordingBackend()
    domain = DomainAnswerer(settings.domain, backend=lambda: backend, registry=adapter_registry(settings),
                            memory=memory, glossary=Glossary.load(REPO / "data" / "glossary.yaml"))
    pipeline = Pipeline.from_settings(settings, store, DomainRouter(),
                                      {"domain": domain, "escalate": escalation_answerer(settings)},
                                      gate=answer_gate(settings))
    services = build_services(settings, pipeline, store, memory=memory)
    server = HttpSlackServer.from_settings(build_app(settings, pipeline, store, services=services), settings)
    server.start_in_thread()
    send = SignedSender(server.url)
    try:
        yield send, backend, store, services
    finally:
        server.stop()
        services.drain()
        send.http.close()
        store.close()


def finals(fake: FakeSlack) -> list[Any]:
    return [c for c in fake.calls_to("chat.update") if "Route:" in c.block_text()]


def test_a_covered_question_gets_its_entry_and_an_uncovered_one_goes_to_the_plant_team(
    plant_bot: tuple[SignedSender, RecordingBackend, ConversationStore, Any], fake_slack: FakeSlack  # noqa: F811
) -> None:
    send, backend, store, services = plant_bot
    send.event(mention(COVERED, ts="1710000000.000100"), event_id="EvCovered")
    [covered] = fake_slack.wait_for(finals)
    assert "every two to four days" in covered.block_text()
    assert "Our team answered a similar question" in covered.block_text()

    send.event(mention(UNCOVERED, ts="1710000100.000100"), event_id="EvUncovered")
    [_, uncovered] = fake_slack.wait_for(lambda f: finals(f)[1:] and finals(f))
    assert "I don't have a checked answer for that yet, so I've asked our plant team" in uncovered.block_text()
    assert "similar question" not in uncovered.block_text(), "no other plant's entry reaches the customer"
    assert backend.model.prompts == [], "the bundled model is never asked to speak"

    [notice] = fake_slack.wait_for(lambda f: [c for c in f.calls_to("chat.postMessage") if c.args.get("channel") == "CSTAFF"])
    text = notice.block_text()
    assert "has no checked answer" in text and "Monstera" in text
    assert "What the bot found, and why it did not answer" in text and "domain:" in text

    turn = store.recent_turns(1)[0]
    assert turn.answer_kind == "no_answer" and turn.handoff_note

    from bot.slack.blocks import staff_home_view, status_text
    from bot.slack.status import collect_status

    status = collect_status(services.settings, store, memory=None)
    assert status.unanswered_count == 1 and status.unanswered[0].question == UNCOVERED
    assert "No checked answer yet" in str(staff_home_view(status, "Rare Roots"))
    assert "Handed off with no checked answer (last 7 days):* 1" in status_text(status)
