"""When Slack's Web API is away, no question is lost and none is answered twice.

The fake Slack really goes away (its port refuses connections) while customers keep asking;
the bot acks the events, answers and logs every question, and re-posts each answer once Slack
is back.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import Settings
from bot.errors import ConfigError
from bot.slack.blocks import status_text
from bot.slack.client import build_web_client, wait_for_slack
from bot.slack.delivery import DeliveryRetrier
from bot.slack.status import collect_status
from bot.testing.fake_slack import FakeSlack
from tests.slack.conftest import HarnessFactory, mention

FAST_DELIVERY = {
    "slack__delivery_retry_s": 0.5,
    "slack__delivery_retry_max_s": 2.0,
    "slack__delivery_poll_s": 0.3,
}


def final_answers(fake: FakeSlack) -> list:
    """Answers that reached a thread: a fresh post or a replaced placeholder, carrying the route line."""
    return [c for c in fake.calls_to("chat.postMessage") + fake.calls_to("chat.update") if "Route:" in c.block_text()]


@pytest.mark.slow
def test_questions_asked_while_slack_is_down_for_30_s_are_all_answered_once_it_is_back(
    slack_harness: HarnessFactory, fake_slack: FakeSlack
) -> None:
    h = slack_harness(**FAST_DELIVERY)
    fake_slack.go_down()
    try:
        for i in range(20):
            response = h.send.event(mention(f"How long does shipping to Canada take? #{i}", user=f"UCUST{i:02d}",
                                            ts=f"1710000200.{i:06d}"))
            assert response.status_code == 200
        deadline = time.monotonic() + 30
        while h.store.count_undelivered() < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert h.store.count_turns() == 20, "every question is answered and logged while Slack is down"
        assert h.store.count_undelivered() == 20
        time.sleep(max(0.0, deadline - time.monotonic()))  # Slack stays away for the full 30 s
    finally:
        fake_slack.come_back()
    fake_slack.wait_for(lambda fake: len(final_answers(fake)) >= 20, timeout=60)
    time.sleep(2.0)  # a duplicate, if any, would arrive now
    answers = final_answers(fake_slack)
    threads = [c.args.get("thread_ts") or c.args.get("ts") for c in answers]
    assert len(answers) == 20 and len(set(threads)) == 20, "each question answered exactly once"
    assert h.store.count_undelivered() == 0
    assert {t.delivery for t in h.store.recent_turns(20)} == {"delivered"}


def test_a_placeholder_that_cannot_be_replaced_is_replaced_later_not_duplicated(
    slack_harness: HarnessFactory, fake_slack: FakeSlack
) -> None:
    h = slack_harness(**FAST_DELIVERY)
    # Slack's 5xx outlasts the client's retries (2) for the first replacement of "Thinking…".
    fake_slack.fail_next("chat.update", 503, times=3)
    h.send.event(mention("How long does shipping to Canada take?"))
    fake_slack.wait_for(lambda fake: final_answers(fake))
    time.sleep(1.0)
    placeholder = fake_slack.calls_to("chat.postMessage")
    assert len(placeholder) == 1 and "Thinking" in str(placeholder[0].args.get("text"))
    finals = final_answers(fake_slack)
    assert len(finals) == 1 and finals[0].method == "chat.update"
    assert finals[0].args["ts"] == placeholder[0].response["ts"]
    turn = h.store.recent_turns(1)[0]
    assert turn.delivery == "delivered" and turn.delivery_attempts == 1
    assert turn.message_ts == placeholder[0].response["ts"], "staff flags on the answer still find the turn"


def test_an_answer_never_delivered_is_shown_to_staff(
    slack_harness: HarnessFactory, fake_slack: FakeSlack
) -> None:
    h = slack_harness(**{**FAST_DELIVERY, "slack__delivery_poll_s": 3600})  # only the explicit pass below
    fake_slack.go_down()
    try:
        h.send.event(mention("How long does shipping to Canada take?", user="ULOST"))
        deadline = time.monotonic() + 20
        while not h.store.undelivered_turns() and time.monotonic() < deadline:
            time.sleep(0.1)
        retrier = DeliveryRetrier(h.services.answers, h.store, poll_s=3600, retry_s=0.1, retry_max_s=0.1,
                                  give_up_s=0.0, now=lambda: datetime.now(UTC) + timedelta(seconds=5))
        assert retrier.run_once() == 0
    finally:
        fake_slack.come_back()
    [turn] = h.store.undelivered_turns()
    assert turn.delivery == "failed" and "slack_unreachable" in turn.delivery_error
    text = status_text(collect_status(h.settings, h.store))
    assert "Answers Slack has not taken yet" in text and "How long does shipping to Canada take?" in text
    assert "given up" in text


def test_serve_waits_for_an_unreachable_slack_instead_of_dying(
    settings_factory, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    settings: Settings = settings_factory(env={"SLACK_BOT_TOKEN": "xoxb-test"},
                                          **{"slack.api_base_url": fake_slack.url, "slack.api_max_retries": 0})
    client = build_web_client(settings)
    fake_slack.go_down()
    threading.Timer(2.5, fake_slack.come_back).start()
    caplog.set_level(logging.WARNING)
    result = wait_for_slack(client, max_delay_s=1.0)
    assert result is not None and result["user_id"] == "UBOT"
    waits = [r for r in caplog.records if "is not answering" in r.getMessage()]
    assert waits and all("\n" not in r.getMessage() and r.exc_info is None for r in waits)


def test_a_rejected_bot_token_stops_serve_with_one_line(settings_factory, fake_slack: FakeSlack) -> None:
    settings: Settings = settings_factory(env={"SLACK_BOT_TOKEN": "xoxb-revoked"},
                                          **{"slack.api_base_url": fake_slack.url})
    fake_slack.fail_next("auth.test", 200, body={"ok": False, "error": "invalid_auth"})
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN") as err:
        wait_for_slack(build_web_client(settings))
    assert "\n" not in str(err.value)


def test_a_re_posted_answer_looks_like_the_one_that_failed(slack_harness: HarnessFactory) -> None:
    from bot.interfaces import Answer, AskContext, Source
    from bot.slack.blocks import VERIFIED_TEXT, answer_blocks
    from bot.slack.delivery import answer_from_turn

    h = slack_harness()
    original = Answer(text="Water it twice a week.", route="domain", confidence=0.99, reason="topic: watering",
                      sources=[Source(title="Care", path="knowledge/care.md")], kind="verified")
    turn_id = h.store.log_turn("How often?", original, AskContext(channel="slack", user="U1"))
    again = answer_from_turn(h.store.get_turn(turn_id))
    assert (again.text, again.kind, again.sources[0].path) == (original.text, "verified", "knowledge/care.md")
    assert VERIFIED_TEXT in str(answer_blocks(again)), "a verified answer keeps its 'checked by our team' line"
