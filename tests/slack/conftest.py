"""Fixtures for the Slack app: a fake Slack, a canned pipeline, and the real app served over HTTP.

The app is built by the production factories (`build_services`, `build_app`) and served by the
production `HttpSlackServer` on 127.0.0.1:0; only the pipeline and Slack itself are fakes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext, Draft, PartialCallback, Source
from bot.pipeline import staff_draft
from bot.slack.app import SlackServices, build_app, build_services
from bot.slack.server import HttpSlackServer
from bot.testing.fake_slack import FakeSlack

SIGNING_SECRET = "test-signing-secret"
STAFF = "USTAFF"
CUSTOMER = "UCUST"
STAFF_CHANNEL = "CSTAFF"
SHIPPING_SOURCE = Source(
    title="Shipping",
    heading="Zones and seasons",
    path="knowledge/shipping.md",
    url="https://rareroots.example/shipping",
    updated="2024-05-01",
)


def canned_answer(question: str) -> Answer:
    q = question.lower()
    if "boom" in q:
        raise RuntimeError("database password is hunter2")  # must never reach a customer
    if "refund" in q or "dead" in q or "person" in q:
        return Answer(text="A person from Rare Roots will follow up here shortly.", route="escalate",
                      confidence=0.91, reason="topic: dead plant refund")
    if "ship" in q:
        return Answer(text="We ship live plants to Canada from April to October.", route="retrieval",
                      confidence=0.82, reason="topic: shipping zones", sources=[SHIPPING_SOURCE])
    return Answer(text="Water a Masdevallia when the top of the moss feels barely dry.", route="domain",
                  confidence=0.77, reason="topic: orchid watering")


class DraftAnswerer:
    """What the pipeline's retrieval answerer would say; used for the staff escalation note."""

    route = "retrieval"

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        return Draft(text="Our arrival guarantee covers plants that arrive dead: we refund or replace.")


@dataclass
class FakePipeline:
    """Same `answer` signature as `bot.pipeline.Pipeline`; logs turns in the real store."""

    store: ConversationStore
    partials: list[str] = field(default_factory=list)
    partial_pause_s: float = 0.0
    gate: threading.Event | None = None
    asked: list[tuple[str, AskContext]] = field(default_factory=list)
    answerers: dict[str, Any] = field(default_factory=lambda: {"retrieval": DraftAnswerer()})
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def staff_draft(self, question: str, ctx: AskContext) -> str:
        return staff_draft(self.answerers, question, ctx)

    def answer(self, question: str, ctx: AskContext | None = None, on_partial: PartialCallback | None = None) -> Answer:
        ctx = ctx or AskContext()
        with self._lock:
            self.asked.append((question, ctx))
        if self.gate is not None:
            self.gate.wait(30)
        answer = canned_answer(question)
        so_far = ""
        for piece in self.partials:
            so_far += piece
            if on_partial is not None:
                on_partial(so_far)  # like the domain answerer: the text so far
            time.sleep(self.partial_pause_s)  # stands in for the model writing the next tokens
        turn_id = self.store.log_turn(question, answer, ctx)
        return replace(answer, turn_id=turn_id)


class SignedSender:
    """Sends requests to the app the way Slack does: signed, form or JSON encoded."""

    def __init__(self, url: str, secret: str = SIGNING_SECRET) -> None:
        self.url = url
        self.verifier = SignatureVerifier(secret)
        self.http = httpx.Client(timeout=10)
        self._counter = 0

    def post(self, body: str, content_type: str, *, retry_num: int | None = None,
             signature: str | None = None) -> httpx.Response:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature or self.verifier.generate_signature(timestamp=timestamp, body=body),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return self.http.post(self.url, content=body.encode(), headers=headers)

    def event(self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None,
              signature: str | None = None) -> httpx.Response:
        self._counter += 1
        body = {
            "token": "legacy",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "type": "event_callback",
            "event_id": event_id or f"Ev{self._counter:06d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": "T0001", "user_id": "UBOT", "is_bot": True}],
            "event": event,
        }
        return self.post(json.dumps(body), "application/json", retry_num=retry_num, signature=signature)

    def interactive(self, payload: dict[str, Any]) -> httpx.Response:
        payload = {"team": {"id": "T0001"}, "api_app_id": "A0001", "token": "legacy", **payload}
        return self.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def command(self, text: str, user: str, channel: str = "CGENERAL") -> httpx.Response:
        form = {"command": "/supportbot", "text": text, "user_id": user, "channel_id": channel, "team_id": "T0001",
                "api_app_id": "A0001", "trigger_id": "1.2.trigger", "response_url": "https://hooks.invalid/x"}
        return self.post(urlencode(form), "application/x-www-form-urlencoded")


def mention(text: str, *, user: str = CUSTOMER, channel: str = "CGENERAL", ts: str = "1710000000.000100",
            thread_ts: str | None = None) -> dict[str, Any]:
    event = {"type": "app_mention", "user": user, "text": f"<@UBOT> {text}", "ts": ts, "channel": channel,
             "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def message(text: str, *, user: str = CUSTOMER, channel: str = "DCUST", ts: str = "1710000001.000100",
            channel_type: str = "im", thread_ts: str | None = None) -> dict[str, Any]:
    event = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel,
             "channel_type": channel_type, "event_ts": ts}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def button(action_id: str, value: str, *, user: str, channel: str, message_ts: str,
           thread_ts: str | None = None) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user},
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "message": {"ts": message_ts, "thread_ts": thread_ts or message_ts, "text": "answer"},
        "trigger_id": "1.2.trigger",
        "response_url": "https://hooks.invalid/x",
        "actions": [{"action_id": action_id, "block_id": "b", "value": value, "type": "button"}],
    }


@dataclass
class SlackHarness:
    settings: Settings
    store: ConversationStore
    fake: FakeSlack
    pipeline: FakePipeline
    services: SlackServices
    server: HttpSlackServer
    send: SignedSender
    _finished: bool = False

    def finish(self) -> None:
        """Stop taking requests and finish every accepted question (what a shutdown does)."""
        if not self._finished:
            self._finished = True
            self.server.stop()
            self.services.drain()

    def answered(self, count: int = 1) -> list[Any]:
        """Wait until `count` answers replaced their placeholders; the chat.update calls."""
        def finals(fake: FakeSlack) -> list[Any]:
            done = [c for c in fake.calls_to("chat.update") if "feedback" in c.block_text() or
                    "Route:" in c.block_text() or "went wrong" in str(c.args.get("text"))]
            return done if len(done) >= count else []
        return self.fake.wait_for(finals)


HarnessFactory = Callable[..., SlackHarness]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(usergroups={"SSTAFF": ["UGROUPSTAFF"]}).start()
    yield fake
    fake.stop()


@pytest.fixture
def slack_harness(settings_factory: Callable[..., Settings], fake_slack: FakeSlack,
                  tmp_path: Path) -> Iterator[HarnessFactory]:
    """Builds one app (or several replicas sharing one database) served over HTTP."""
    made: list[SlackHarness] = []
    stores: dict[str, ConversationStore] = {}

    def make(*, db: str = "shared", trainer: Callable[..., Any] | None = None, knowledge: Any = None,
             **overrides: Any) -> SlackHarness:
        dotted = {
            "slack.api_base_url": fake_slack.url,
            "slack.staff_user_ids": [STAFF],
            "slack.staff_usergroup": "SSTAFF",
            "slack.staff_channel": STAFF_CHANNEL,
            "slack.http_host": "127.0.0.1",
            "slack.http_port": 0,
            "slack.api_max_retries": 2,
            "slack.stream_update_interval_s": 0.2,
            **{k.replace("__", "."): v for k, v in overrides.items()},
        }
        settings = settings_factory(env={"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET},
                                    **dotted)
        if db not in stores:
            stores[db] = ConversationStore.open(f"sqlite:///{tmp_path / (db + '.db')}")
        store = stores[db]
        pipeline = FakePipeline(store)
        extra: dict[str, Any] = {}
        if trainer is not None:
            extra["load_trainer"] = lambda: trainer
        services = build_services(settings, pipeline, store, knowledge=knowledge, **extra)
        app = build_app(settings, pipeline, store, services=services)
        server = HttpSlackServer.from_settings(app, settings)
        server.start_in_thread()
        harness = SlackHarness(settings, store, fake_slack, pipeline, services, server, SignedSender(server.url))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.finish()
        harness.send.http.close()
    for store in stores.values():
        store.close()
