"""One question through the real `Pipeline` (fake router and answerers): the log is complete."""

from __future__ import annotations

from collections.abc import Callable

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import AskContext, Draft, PartialCallback, RouteDecision, Source
from bot.pipeline import Pipeline
from bot.slack import ids
from bot.slack.app import build_app, build_services
from bot.slack.server import HttpSlackServer
from bot.testing.fake_slack import FakeSlack
from tests.slack.conftest import CUSTOMER, SIGNING_SECRET, SignedSender, button, mention


class ShippingRouter:
    def decide(self, question: str) -> RouteDecision:
        return RouteDecision(route="retrieval", confidence=0.9, reason="topic: shipping zones", router_version="r7")


class PolicyAnswerer:
    route = "retrieval"

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        return Draft(
            text="Live plants ship to Canada from April to October.",
            sources=[Source(title="Shipping", path="knowledge/shipping.md", heading="Seasons")],
            model_version="kb-1",
        )


def test_slack_question_through_the_real_pipeline_is_logged_with_its_slack_message(
    settings_factory: Callable[..., Settings], fake_slack: FakeSlack, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(
        env={"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET},
        **{"slack.api_base_url": fake_slack.url, "slack.http_host": "127.0.0.1", "slack.http_port": 0},
    )
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    pipeline = Pipeline.from_settings(settings, store, ShippingRouter(),
                        {"retrieval": PolicyAnswerer(), "escalate": EscalationAnswerer(settings.app.company_name)})
    services = build_services(settings, pipeline, store)
    server = HttpSlackServer.from_settings(build_app(settings, pipeline, store, services=services), settings)
    server.start_in_thread()
    send = SignedSender(server.url)
    try:
        send.event(mention("Do you ship to Canada?", ts="1710000000.000100"), event_id="EvREAL")
        [final] = fake_slack.wait_for(lambda f: [c for c in f.calls_to("chat.update") if "Route:" in c.block_text()])
        assert "*Shipping › Seasons* (knowledge/shipping.md)" in final.block_text()
        turn = store.recent_turns(1)[0]
        send.interactive(button(ids.FEEDBACK_UP, str(turn.id), user=CUSTOMER, channel="CGENERAL",
                                message_ts=final.args["ts"]))
        fake_slack.wait_for(lambda f: f.calls_to("chat.postEphemeral"))
    finally:
        server.stop()
        services.drain()
        send.http.close()
    turn = store.get_turn(turn.id)
    assert (turn.channel, turn.user_id, turn.slack_channel, turn.thread_ts) == (
        "slack", CUSTOMER, "CGENERAL", "1710000000.000100")
    assert turn.message_ts == final.args["ts"]
    assert (turn.route, turn.router_version, turn.model_version) == ("retrieval", "r7", "kb-1")
    assert store.turn_by_message("CGENERAL", final.args["ts"]).id == turn.id
    assert store.feedback_for(turn.id) == {CUSTOMER: 1}
    assert store.last_turn_for("slack", "CGENERAL:1710000000.000100").id == turn.id
    store.close()


class CountingAnswerer(PolicyAnswerer):
    def __init__(self) -> None:
        self.asked: list[str] = []

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        self.asked.append(question)
        return super().answer(question, ctx, on_partial)


def test_an_over_long_slack_question_reaches_no_model_not_even_for_the_staff_draft(
    settings_factory: Callable[..., Settings], fake_slack: FakeSlack, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    settings = settings_factory(
        env={"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SIGNING_SECRET},
        **{"slack.api_base_url": fake_slack.url, "slack.http_host": "127.0.0.1", "slack.http_port": 0,
           "slack.staff_channel": "CSTAFF", "app.max_question_chars": 200},
    )
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    policy = CountingAnswerer()
    pipeline = Pipeline.from_settings(settings, store, ShippingRouter(), {"retrieval": policy, "escalate": EscalationAnswerer(settings.app.company_name)})
    services = build_services(settings, pipeline, store)
    server = HttpSlackServer.from_settings(build_app(settings, pipeline, store, services=services), settings)
    server.start_in_thread()
    send = SignedSender(server.url)
    try:
        send.event(mention("Do you ship to Canada? " + "please " * 500, ts="1710000000.000200"))
        [final] = fake_slack.wait_for(lambda f: [c for c in f.calls_to("chat.update") if "Route:" in c.block_text()])
        [notice] = fake_slack.wait_for(lambda f: [c for c in f.calls_to("chat.postMessage")
                                                  if c.args.get("channel") == "CSTAFF"])
    finally:
        server.stop()
        services.drain()
        send.http.close()
    assert "too long" in final.block_text()
    assert policy.asked == [], "no answerer may read an over-long question"
    assert len(notice.block_text()) < 6000
    store.close()
