"""Customer votes, the hand-off after a 👎, and router escalations reaching the staff channel."""

from __future__ import annotations

from bot.slack import ids
from tests.slack.conftest import CUSTOMER, STAFF_CHANNEL, HarnessFactory, button, mention, message


def _answer_one(h, text: str = "How long does shipping to Canada take?", ts: str = "1710000000.000100"):  # type: ignore[no-untyped-def]
    h.send.event(mention(text, ts=ts))
    [final] = h.answered()
    turn = h.store.recent_turns(1)[0]
    return turn, final.args["ts"]


def test_feedback_vote_is_stored_and_a_changed_vote_replaces_it(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    turn, answer_ts = _answer_one(h)
    up = button(ids.FEEDBACK_UP, str(turn.id), user=CUSTOMER, channel="CGENERAL", message_ts=answer_ts)
    assert h.send.interactive(up).status_code == 200
    h.fake.wait_for(lambda f: f.calls_to("chat.postEphemeral"))
    assert h.store.feedback_for(turn.id) == {CUSTOMER: 1}

    down = button(ids.FEEDBACK_DOWN, str(turn.id), user=CUSTOMER, channel="CGENERAL", message_ts=answer_ts)
    h.send.interactive(down)
    h.send.interactive(button(ids.FEEDBACK_UP, str(turn.id), user="UOTHER", channel="CGENERAL",
                              message_ts=answer_ts))
    h.finish()
    assert h.store.feedback_for(turn.id) == {CUSTOMER: -1, "UOTHER": 1}
    offer = [c for c in h.fake.calls_to("chat.postEphemeral") if ids.TALK_TO_PERSON in c.block_text()]
    assert len(offer) == 1 and offer[0].args["user"] == CUSTOMER
    assert offer[0].args["thread_ts"] == answer_ts


def test_talk_to_a_person_after_a_downvote_escalates_once(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    turn, answer_ts = _answer_one(h)
    click = button(ids.TALK_TO_PERSON, str(turn.id), user=CUSTOMER, channel="CGENERAL", message_ts="1.2")
    h.send.interactive(click)
    h.send.interactive(click)  # an impatient second click
    h.finish()
    [notice] = [c for c in h.fake.calls_to("chat.postMessage") if c.args["channel"] == STAFF_CHANNEL]
    text = notice.block_text()
    assert "How long does shipping to Canada take?" in text  # the question
    assert "We ship live plants to Canada" in text  # what the bot said
    assert f"https://rareroots.slack.com/archives/CGENERAL/p{answer_ts.replace('.', '')}" in text
    [handoff] = [c for c in h.fake.calls_to("chat.postMessage")
                 if c.args["channel"] == "CGENERAL" and "follow up" in c.args.get("text", "")]
    assert handoff.args["thread_ts"] == "1710000000.000100"
    already = [c for c in h.fake.calls_to("chat.postEphemeral") if "already asked" in c.args["text"]]
    assert len(already) == 1


def test_router_escalation_tells_the_customer_and_notifies_staff(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    h.send.event(mention("My orchid arrived dead and I want a refund", ts="1710000700.000100"))
    [final] = h.answered()
    assert "will follow up" in final.args["text"]
    assert ids.FEEDBACK_UP not in final.block_text()  # no vote buttons on a hand-off
    h.finish()
    [notice] = [c for c in h.fake.calls_to("chat.postMessage") if c.args["channel"] == STAFF_CHANNEL]
    text = notice.block_text()
    assert f"<@{CUSTOMER}> needs a person" in text
    assert "arrived dead and I want a refund" in text
    assert "arrival guarantee covers plants that arrive dead" in text  # the bot's draft for staff
    assert "archives/CGENERAL/p" in text


def test_bot_stays_quiet_in_a_thread_handed_to_a_person(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    h.send.event(mention("My orchid arrived dead and I want a refund", ts="1710000800.000100"))
    h.answered()
    h.send.event(message("Hello? Anyone?", channel="CGENERAL", channel_type="channel",
                         ts="1710000801.000100", thread_ts="1710000800.000100"))
    h.finish()
    assert len(h.pipeline.asked) == 1


def test_escalation_without_a_staff_channel_is_logged_as_an_error(slack_harness: HarnessFactory, caplog) -> None:  # type: ignore[no-untyped-def]
    h = slack_harness(slack__staff_channel="")
    with caplog.at_level("ERROR", logger="bot.slack.escalation"):
        h.send.event(mention("I want a refund", ts="1710000900.000100"))
        h.answered()
        h.finish()
    assert any("needs a person but slack.staff_channel is not set" in r.getMessage() for r in caplog.records)
