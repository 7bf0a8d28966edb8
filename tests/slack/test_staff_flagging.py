"""Staff labels: the message shortcut, its modal, reactions, and refusals for everyone else."""

from __future__ import annotations

import json

from bot.slack import ids
from bot.slack.middleware import STAFF_ONLY_TEXT
from tests.slack.conftest import CUSTOMER, STAFF, HarnessFactory, mention


def _answer(h):  # type: ignore[no-untyped-def]
    h.send.event(mention("How long does shipping to Canada take?", ts="1710000000.000100"))
    [final] = h.answered()
    return h.store.recent_turns(1)[0], final.args["ts"]


def _shortcut(user: str, message_ts: str, channel: str = "CGENERAL") -> dict:
    return {
        "type": "message_action",
        "callback_id": ids.FLAG_SHORTCUT,
        "trigger_id": "1.2.trigger",
        "user": {"id": user},
        "channel": {"id": channel},
        "message_ts": message_ts,
        "message": {"ts": message_ts, "text": "answer", "user": "UBOT"},
        "response_url": "https://hooks.invalid/x",
    }


def _submission(user: str, private_metadata: str, verdict: str | None, corrected: str = "",
                route: str | None = None, note: str = "") -> dict:
    def option(value: str | None) -> dict:
        return {"selected_option": {"value": value}} if value else {"selected_option": None}

    return {
        "type": "view_submission",
        "user": {"id": user},
        "trigger_id": "1.2.trigger",
        "view": {
            "id": "V0001",
            "type": "modal",
            "callback_id": ids.FLAG_VIEW,
            "private_metadata": private_metadata,
            "state": {"values": {
                ids.FLAG_VERDICT_BLOCK: {ids.FLAG_VERDICT_ACTION: option(verdict)},
                ids.FLAG_CORRECTED_BLOCK: {ids.FLAG_CORRECTED_ACTION: {"value": corrected}},
                ids.FLAG_ROUTE_BLOCK: {ids.FLAG_ROUTE_ACTION: option(route)},
                ids.FLAG_NOTE_BLOCK: {ids.FLAG_NOTE_ACTION: {"value": note}},
            }},
        },
    }


def test_staff_shortcut_opens_the_modal_and_submitting_stores_the_label(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    turn, answer_ts = _answer(h)
    assert h.send.interactive(_shortcut(STAFF, answer_ts)).status_code == 200
    [opened] = h.fake.wait_for(lambda f: f.calls_to("views.open"))
    view = opened.args["view"]
    assert view["callback_id"] == ids.FLAG_VIEW
    assert "How long does shipping to Canada take?" in json.dumps(view)

    response = h.send.interactive(_submission(
        STAFF, view["private_metadata"], "incorrect",
        corrected="We ship to Canada only from May to September.", route="retrieval", note="season changed",
    ))
    assert response.status_code == 200 and response.text == ""  # empty ack closes the modal
    [label] = h.store.labeled_turns()
    assert (label.turn_id, label.verdict, label.correct_route, label.staff_user_id) == (
        turn.id, "incorrect", "retrieval", STAFF)
    assert label.corrected_answer == "We ship to Canada only from May to September."
    h.fake.wait_for(lambda f: [c for c in f.calls_to("chat.postEphemeral") if "Label saved" in c.args["text"]])


def test_modal_without_a_verdict_shows_an_error_and_stores_nothing(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    turn, _ = _answer(h)
    metadata = json.dumps({"turn_id": turn.id, "channel": "CGENERAL", "message_ts": "x"})
    response = h.send.interactive(_submission(STAFF, metadata, None))
    assert response.json()["response_action"] == "errors"
    assert ids.FLAG_VERDICT_BLOCK in response.json()["errors"]
    assert h.store.labeled_turns() == []


def test_user_group_member_counts_as_staff(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    _, answer_ts = _answer(h)
    h.send.interactive(_shortcut("UGROUPSTAFF", answer_ts))
    h.fake.wait_for(lambda f: f.calls_to("views.open"))
    assert h.fake.calls_to("usergroups.users.list")[0].args["usergroup"] == "SSTAFF"


def test_non_staff_shortcut_is_refused_and_nothing_is_stored(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    turn, answer_ts = _answer(h)
    h.send.interactive(_shortcut(CUSTOMER, answer_ts))
    [refusal] = h.fake.wait_for(lambda f: f.calls_to("chat.postEphemeral"))
    assert refusal.args["text"] == STAFF_ONLY_TEXT and refusal.args["user"] == CUSTOMER
    # A forged submission from a non-staff user is refused too.
    metadata = json.dumps({"turn_id": turn.id, "channel": "CGENERAL", "message_ts": answer_ts})
    response = h.send.interactive(_submission(CUSTOMER, metadata, "incorrect", corrected="free plants!"))
    assert response.json()["response_action"] == "errors"
    h.finish()
    assert h.fake.calls_to("views.open") == []
    assert h.store.labeled_turns() == []


def test_shortcut_on_a_message_that_is_not_a_bot_answer_explains_itself(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    h.send.interactive(_shortcut(STAFF, "1690000000.000001"))
    [reply] = h.fake.wait_for(lambda f: f.calls_to("chat.postEphemeral"))
    assert "only flag my own answers" in reply.args["text"]
    assert h.fake.calls_to("views.open") == []


def test_staff_reaction_labels_the_answer_and_customer_reactions_do_not(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    turn, answer_ts = _answer(h)

    def reaction(user: str, emoji: str) -> dict:
        return {"type": "reaction_added", "user": user, "reaction": emoji, "item_user": "UBOT",
                "item": {"type": "message", "channel": "CGENERAL", "ts": answer_ts}, "event_ts": "1.1"}

    h.send.event(reaction(CUSTOMER, "x"))
    h.send.event(reaction(STAFF, "thumbsup"))
    h.send.event(reaction(STAFF, "x"), event_id="EvREACT")
    h.send.event(reaction(STAFF, "x"), event_id="EvREACT", retry_num=1)
    h.finish()
    [label] = h.store.labeled_turns()
    assert (label.turn_id, label.verdict, label.staff_user_id) == (turn.id, "incorrect", STAFF)
    assert h.store.count_labels_since(None) == 1
