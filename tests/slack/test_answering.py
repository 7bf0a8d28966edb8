"""Questions end to end over HTTP: signed events in, Web API calls out (recorded by the fake Slack)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from bot.slack.blocks import POLITE_ERROR_TEXT, THINKING_TEXT
from tests.slack.conftest import CUSTOMER, STAFF, HarnessFactory, mention, message


def test_mention_posts_thinking_then_the_answer_in_the_thread_with_blocks(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    response = h.send.event(mention("How long does shipping to Canada take?", ts="1710000000.000100"))
    assert response.status_code == 200

    [final] = h.answered()
    [placeholder] = h.fake.calls_to("chat.postMessage")
    assert placeholder.args["channel"] == "CGENERAL"
    assert placeholder.args["thread_ts"] == "1710000000.000100"
    assert placeholder.args["text"] == THINKING_TEXT
    assert final.args["ts"] == placeholder.response["ts"]  # the placeholder itself became the answer
    assert final.args["text"] == "We ship live plants to Canada from April to October."
    kinds = [b["type"] for b in final.blocks]
    assert kinds == ["section", "context", "context", "actions"]
    assert "Route: *retrieval*" in final.block_text() and "82%" in final.block_text()
    assert "<https://rareroots.example/shipping|Shipping › Zones and seasons>" in final.block_text()
    turn = h.store.recent_turns(1)[0]
    buttons = final.blocks[-1]["elements"]
    assert [b["value"] for b in buttons] == [str(turn.id), str(turn.id)]
    # The pipeline got the question without the mention, in the thread's conversation.
    question, ctx = h.pipeline.asked[0]
    assert question == "How long does shipping to Canada take?"
    assert ctx.conversation_key == "CGENERAL:1710000000.000100" and ctx.channel == "slack"
    h.finish()
    assert h.store.get_turn(turn.id).message_ts == final.args["ts"]


def test_direct_message_is_answered_in_its_thread(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    h.send.event(message("How often should I water a Masdevallia?", channel="DCUST", ts="1710000005.000100"))
    [final] = h.answered()
    assert final.args["channel"] == "DCUST"
    assert "Route: *domain*" in final.block_text()
    assert h.fake.calls_to("chat.postMessage")[0].args["thread_ts"] == "1710000005.000100"


def test_retried_event_is_answered_once(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    event = mention("How long does shipping to Canada take?")
    assert h.send.event(event, event_id="EvRETRY").status_code == 200
    assert h.send.event(event, event_id="EvRETRY", retry_num=1).status_code == 200
    assert h.send.event(event, event_id="EvRETRY", retry_num=2).status_code == 200
    h.finish()
    assert len(h.pipeline.asked) == 1
    assert len(h.fake.calls_to("chat.postMessage")) == 1


def test_same_event_is_answered_once_across_replicas_and_restarts(slack_harness: HarnessFactory) -> None:
    first, second = slack_harness(), slack_harness()  # two replicas on one database
    event = mention("How long does shipping to Canada take?")
    first.send.event(event, event_id="EvSHARED")
    second.send.event(event, event_id="EvSHARED", retry_num=1)
    first.finish()
    second.finish()
    restarted = slack_harness()  # a fresh process after a restart, same database
    restarted.send.event(event, event_id="EvSHARED", retry_num=2)
    restarted.finish()
    asked = len(first.pipeline.asked) + len(second.pipeline.asked) + len(restarted.pipeline.asked)
    assert asked == 1
    assert len(first.fake.calls_to("chat.postMessage")) == 1


def test_mention_in_a_thread_is_not_answered_twice_by_its_message_event(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    h.send.event(mention("How long does shipping take?", ts="1710000100.000100", thread_ts="1710000000.000100"))
    # Slack also delivers the same message as a `message` event with a different event id.
    h.send.event(message("<@UBOT> How long does shipping take?", channel="CGENERAL", channel_type="channel",
                         ts="1710000100.000100", thread_ts="1710000000.000100"))
    h.finish()
    assert len(h.pipeline.asked) == 1


def test_bad_signature_is_rejected_with_401_and_nothing_is_posted(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    response = h.send.event(mention("How long does shipping take?"), signature="v0=" + "0" * 64)
    assert response.status_code == 401
    h.finish()
    assert h.pipeline.asked == []
    assert [c.method for c in h.fake.calls if c.method != "auth.test"] == []


def test_rate_limited_api_call_is_retried_after_retry_after(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    h.fake.fail_next("chat.postMessage", 429, retry_after="0")
    h.fake.fail_next("chat.update", 503)
    h.send.event(mention("How long does shipping to Canada take?"))
    [final] = h.answered()
    attempts = h.fake.calls_to("chat.postMessage", ok_only=False)
    assert [c.status for c in attempts] == [429, 200]
    assert [c.status for c in h.fake.calls_to("chat.update", ok_only=False)] == [503, 200]
    assert final.args["ts"] == attempts[1].response["ts"]


def test_answer_that_cannot_be_posted_stays_in_the_log_as_undelivered(
    slack_harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    h = slack_harness(slack__api_max_retries=1, slack__delivery_poll_s=3600)
    h.fake.fail_next("chat.update", 500, times=100)
    h.fake.fail_next("chat.postMessage", 500, times=100, when=lambda args: args.get("text") != THINKING_TEXT)
    with caplog.at_level(logging.WARNING, logger="bot.slack.answer_service"):
        h.send.event(mention("How long does shipping to Canada take?"))
        h.finish()
    assert len(h.fake.calls_to("chat.update", ok_only=False)) == 2  # first try + one retry
    turn = h.store.recent_turns(1)[0]
    assert turn.answer.startswith("We ship live plants") and turn.delivery == "pending"
    assert "500" in turn.delivery_error or "internal_error" in turn.delivery_error
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"turn={turn.id}" in w and "not delivered" in w for w in warnings), warnings


def test_failing_pipeline_gets_a_polite_reply_without_exception_text(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    h.send.event(mention("boom"))
    [final] = h.answered()
    assert final.args["text"] == POLITE_ERROR_TEXT
    assert "hunter2" not in json.dumps([c.args for c in h.fake.calls])


def test_user_over_the_rate_limit_gets_a_polite_message(slack_harness: HarnessFactory) -> None:
    h = slack_harness(slack__rate_limit_per_minute=2)
    for i in range(3):
        h.send.event(mention(f"How often should I water orchid number {i}?", ts=f"171000020{i}.000100"))
    h.finish()
    assert len(h.pipeline.asked) == 2
    [slow_down] = h.fake.calls_to("chat.postEphemeral")
    assert slow_down.args["user"] == CUSTOMER
    assert "wait a moment" in slow_down.args["text"]


def test_follow_up_in_the_bots_thread_is_answered_but_staff_and_other_threads_are_not(
    slack_harness: HarnessFactory,
) -> None:
    h = slack_harness()
    h.send.event(mention("How often should I water a Masdevallia?", ts="1710000300.000100"))
    h.answered()
    h.send.event(message("And in winter?", channel="CGENERAL", channel_type="channel",
                         ts="1710000301.000100", thread_ts="1710000300.000100"))
    h.send.event(message("I'll take it from here", user=STAFF, channel="CGENERAL", channel_type="channel",
                         ts="1710000302.000100", thread_ts="1710000300.000100"))
    h.send.event(message("Unrelated chatter", channel="CGENERAL", channel_type="channel",
                         ts="1710000401.000100", thread_ts="1710000400.000100"))
    h.send.event(message("Top-level chatter", channel="CGENERAL", channel_type="channel", ts="1710000500.000100"))
    h.finish()
    assert [q for q, _ in h.pipeline.asked] == ["How often should I water a Masdevallia?", "And in winter?"]
    assert h.pipeline.asked[1][1].conversation_key == "CGENERAL:1710000300.000100"


def test_streamed_answer_updates_the_placeholder_before_the_final_answer(slack_harness: HarnessFactory) -> None:
    h = slack_harness(slack__stream_update_interval_s=0.2)
    h.pipeline.partials = ["Water a Masdevallia", " when the moss", " feels barely dry."]
    h.pipeline.partial_pause_s = 0.25
    h.send.event(mention("How often should I water a Masdevallia?"))
    h.answered()
    h.finish()
    updates = h.fake.calls_to("chat.update")
    previews = [u for u in updates if "still writing" in u.block_text()]
    assert previews, "no streamed preview was shown"
    assert "Water a Masdevallia" in previews[0].block_text()
    assert "Route:" in updates[-1].block_text()  # the final answer is the last edit


def test_health_check_answers_for_the_load_balancer(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    url = h.server.url.rsplit("/slack/events", 1)[0] + "/healthz"
    response = h.send.http.get(url)
    assert response.status_code == 200 and response.text == "ok"


def test_ack_returns_before_the_answer_is_ready(slack_harness: HarnessFactory) -> None:
    import threading

    h = slack_harness()
    h.pipeline.gate = threading.Event()  # the model is "busy" until released
    started = time.perf_counter()
    response = h.send.event(mention("How often should I water a Masdevallia?"))
    acked_in = time.perf_counter() - started
    assert response.status_code == 200
    assert acked_in < 2.0
    h.fake.wait_for(lambda f: f.calls_to("chat.postMessage"))  # "Thinking…" is up while the model works
    assert h.fake.calls_to("chat.update") == []
    h.pipeline.gate.set()
    h.answered()
