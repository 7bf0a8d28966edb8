"""The whole loop in Slack: a customer asks, staff correct the answer in the modal, and the next
customer who asks the same thing in other words gets the staff's answer, marked as checked.

Real Bolt app over HTTP, fake Slack Web API, real Pipeline, real log, real MiniLM and Chroma;
only the router (fixed to domain) and the LLM (a recording stand-in) are doubles.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.answerers.domain_model import DomainAnswerer
from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import RouteDecision
from bot.pipeline import Pipeline
from bot.registry import adapter_registry
from bot.slack.app import build_app, build_services
from bot.slack.server import HttpSlackServer
from bot.testing.fake_slack import FakeSlack
from tests.memory.conftest import RecordingBackend
from tests.memory.test_expert_memory import CORRECTED, PARAPHRASE, QUESTION
from tests.slack.conftest import SIGNING_SECRET, STAFF, SignedSender, fake_slack, mention  # noqa: F401
from tests.slack.test_staff_flagging import _shortcut, _submission


class DomainRouter:
    def decide(self, question: str) -> RouteDecision:
        return RouteDecision(route="domain", confidence=0.9, reason="topic: carnivorous plants")


@dataclass
class DomainBot:
    """The production Slack app over HTTP, its pipeline answering every question on the domain route."""

    store: ConversationStore
    memory: Any
    backend: RecordingBackend
    services: Any
    server: HttpSlackServer
    send: SignedSender

    @classmethod
    def start(cls, memory_settings: Callable[..., Settings], make_memory: Any, fake: FakeSlack, tmp_path: Any) -> DomainBot:
        settings = memory_settings(
            env={"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET},
            **{"slack.api_base_url": fake.url, "slack.http_host": "127.0.0.1", "slack.http_port": 0,
               "slack.staff_user_ids": [STAFF], "memory.poll_s": 3600,  # only the save itself may refresh
               # The story: the model itself answered (a shop that lets it speak), wrongly, and staff corrected it.
               "domain.model_answers": "always", "memory.similar_threshold": 1.01},
        )
        store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
        memory = make_memory(settings, store)
        backend = RecordingBackend()
        domain = DomainAnswerer(settings.domain, backend=lambda: backend, registry=adapter_registry(settings), memory=memory)
        pipeline = Pipeline.from_settings(settings, store, DomainRouter(), {"domain": domain, "escalate": EscalationAnswerer(settings.app.company_name)})
        services = build_services(settings, pipeline, store, memory=memory)
        server = HttpSlackServer.from_settings(build_app(settings, pipeline, store, services=services), settings)
        server.start_in_thread()
        return cls(store, memory, backend, services, server, SignedSender(server.url))


def finals(fake: FakeSlack) -> list[Any]:
    return [c for c in fake.calls_to("chat.update") if "Route:" in c.block_text()]


def test_a_correction_saved_in_the_slack_modal_answers_the_next_customer_as_checked(
    memory_settings: Callable[..., Settings], make_memory: Any, fake_slack: FakeSlack, tmp_path: Any  # noqa: F811
) -> None:
    bot = DomainBot.start(memory_settings, make_memory, fake_slack, tmp_path)
    store, backend, services, server, send = bot.store, bot.backend, bot.services, bot.server, bot.send
    try:
        send.event(mention(QUESTION, ts="1710000000.000100"))
        [first] = fake_slack.wait_for(finals)
        assert backend.model.text in first.block_text()

        send.interactive(_shortcut(STAFF, first.args["ts"]))
        [opened] = fake_slack.wait_for(lambda f: f.calls_to("views.open"))
        send.interactive(_submission(STAFF, opened.args["view"]["private_metadata"], "incorrect",
                                     corrected=CORRECTED, route="domain"))
        [confirmation] = fake_slack.wait_for(lambda f: f.calls_to("chat.postEphemeral"))
        assert "next customer who asks this gets your answer" in confirmation.args["text"]

        send.event(mention(PARAPHRASE, user="UOTHER", ts="1710000050.000100"))
        second = fake_slack.wait_for(lambda f: finals(f) if len(finals(f)) >= 2 else [])[-1]
    finally:
        server.stop()
        services.drain()
        send.http.close()
    assert CORRECTED in second.block_text() and "checked by" in second.block_text().lower()
    assert len(backend.model.prompts) == 1, "the second answer was not generated"
    turn = store.recent_turns(1)[0]
    assert (turn.answer_kind, turn.answer) == ("verified", CORRECTED)
    store.close()


def test_withdrawing_the_label_in_the_modal_takes_the_answer_out_of_the_memory(
    memory_settings: Callable[..., Settings], make_memory: Any, fake_slack: FakeSlack, tmp_path: Any  # noqa: F811
) -> None:
    bot = DomainBot.start(memory_settings, make_memory, fake_slack, tmp_path)
    store, memory, services, server, send = bot.store, bot.memory, bot.services, bot.server, bot.send
    try:
        send.event(mention(QUESTION, ts="1710000000.000100"))
        [first] = fake_slack.wait_for(finals)
        metadata = json.dumps({"turn_id": store.recent_turns(1)[0].id, "channel": "CGENERAL",
                               "message_ts": first.args["ts"]})
        send.interactive(_submission(STAFF, metadata, "incorrect", corrected=CORRECTED, route="domain"))
        fake_slack.wait_for(lambda f: f.calls_to("chat.postEphemeral"))  # posted once the memory has it
        assert any(e.answer == CORRECTED for e in memory.entries())
        send.interactive(_submission(STAFF, metadata, "retracted"))
        fake_slack.wait_for(lambda f: [c for c in f.calls_to("chat.postEphemeral") if "withdrawn" in c.args["text"]])
    finally:
        server.stop()
        services.drain()
        send.http.close()
    assert not any(e.answer == CORRECTED for e in memory.entries())
    store.close()


def test_the_staff_confirmation_says_what_a_label_does_now() -> None:
    from bot.slack.blocks import FlagSubmission, label_saved_text

    def submission(verdict: str, corrected: str = "", route: str = "") -> FlagSubmission:
        return FlagSubmission(turn_id=1, channel="C", message_ts="1.1", verdict=verdict, corrected_answer=corrected,
                              correct_route=route, note="")

    domain = label_saved_text(submission("incorrect", "Water twice a week."), answered_route="domain", memory_on=True)
    assert "next customer who asks this gets your answer" in domain
    policy = label_saved_text(submission("incorrect", "7-10 days."), answered_route="retrieval", memory_on=True,
                              policy_files=["knowledge/shipping.md"])
    assert "fix `knowledge/shipping.md`" in policy and "next customer" not in policy
    opted_in = label_saved_text(submission("incorrect", "7-10 days."), answered_route="retrieval", memory_on=True,
                                reuse_policy=True)
    assert "next customer who asks this gets your answer" in opted_in
    assert "withdrawn" in label_saved_text(submission("retracted"), answered_route="domain", memory_on=True)
