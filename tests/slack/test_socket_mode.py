"""Socket Mode end to end, the path the README recommends to a shop without a public URL: the
app fetches a WebSocket URL from (fake) Slack, acks each envelope over the socket, answers in
the thread through the Web API, and after Slack drops the connection reconnects and answers the
next event, none twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.pipeline import Pipeline
from bot.slack.app import build_app, build_services
from bot.slack.server import run_socket_mode
from bot.testing.fake_slack import FakeSlack
from tests.slack.conftest import mention
from tests.slack.fake_socket_mode import FakeSocketMode
from tests.slack.test_follow_ups import KeywordRouter, Recording


def test_socket_mode_acks_answers_in_the_thread_and_survives_a_dropped_connection(
    settings_factory: Callable[..., Settings], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    socket_mode = FakeSocketMode().start()
    fake_slack.socket_mode_url = socket_mode.url
    settings = settings_factory(
        env={"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": "xapp-test"},
        **{"slack.api_base_url": fake_slack.url, "slack.mode": "socket"},
    )
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    policy = Recording("retrieval")
    pipeline = Pipeline.from_settings(settings, store, KeywordRouter(),
                        {"retrieval": policy, "domain": Recording("domain"), "escalate": EscalationAnswerer(settings.app.company_name)})
    services = build_services(settings, pipeline, store)
    app = build_app(settings, pipeline, store, services=services)
    stop = threading.Event()
    runner = threading.Thread(target=run_socket_mode, args=(app, settings, stop), daemon=True)
    runner.start()

    def answered(count: int) -> Callable[[FakeSlack], object]:
        return lambda f: [c for c in f.calls_to("chat.update") if "Route:" in c.block_text()][count - 1:]

    try:
        socket_mode.wait_for(lambda s: s.connections)
        socket_mode.send_event("env-1", mention("Do you ship to Hawaii?", ts="1710001000.000100"), "EvS1")
        socket_mode.wait_for(lambda s: "env-1" in s.acks)
        [first] = fake_slack.wait_for(answered(1))
        placeholder = fake_slack.calls_to("chat.postMessage")[0]
        assert placeholder.args["thread_ts"] == "1710001000.000100", "answered in the thread"
        assert "retrieval answer to: Do you ship to Hawaii?" in first.block_text()

        socket_mode.drop()
        socket_mode.wait_for(lambda s: len(s.connections) >= 2)  # the app asked for a new URL and reconnected
        assert len(fake_slack.calls_to("apps.connections.open")) >= 2
        socket_mode.send_event("env-2", mention("Do you ship to Alaska?", ts="1710001100.000100"), "EvS2")
        socket_mode.wait_for(lambda s: "env-2" in s.acks)
        fake_slack.wait_for(answered(2))
    finally:
        stop.set()
        runner.join(timeout=15)
        services.drain()
        socket_mode.stop()
        store.close()
    assert policy.asked == ["Do you ship to Hawaii?", "Do you ship to Alaska?"], "each event answered once"
    assert sorted(socket_mode.acks) == ["env-1", "env-2"]
    assert not runner.is_alive()
