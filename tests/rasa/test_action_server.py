"""Rasa posts real webhook payloads to the action server and gets answers, slots and feedback."""

from __future__ import annotations

import json
import logging
import zlib

import pytest

from bot.pipeline import Pipeline
from bot.rasa.actions import (
    FAILURE_REPLY,
    NOTHING_TO_RATE,
    THANKS_HELPFUL,
    THANKS_NOT_HELPFUL,
)
from tests.rasa.conftest import RasaHarness, webhook_payload

pytestmark = pytest.mark.filterwarnings("ignore:Your versions of rasa and rasa_sdk might not be compatible")

WATERING = "How often should I water a Masdevallia orchid?"
SHIPPING = "When do you ship live plants to Canada?"


def slot_events(body: dict) -> dict[str, object]:
    return {e["name"]: e["value"] for e in body["events"] if e["event"] == "slot"}


def test_question_is_answered_through_the_pipeline_with_route_slots(rasa_server: RasaHarness) -> None:
    resp = rasa_server.post(webhook_payload("action_support_answer", "rasa-user-1", WATERING))

    assert resp.status_code == 200
    body = resp.json()
    assert slot_events(body) == {"support_route": "domain", "support_confidence": 0.88}
    (message,) = body["responses"]
    assert message["text"] == "Water a Masdevallia every 2 to 3 days; never let it dry out."
    assert [b["payload"] for b in message["buttons"]] == ["/affirm", "/deny"]
    extra = message["custom"]["supportbot"]
    assert extra["route"] == "domain" and extra["reason"] == "topic: orchid care"
    assert rasa_server.domain_answerer.questions == [WATERING]


def test_answer_is_logged_under_the_rasa_sender_id(rasa_server: RasaHarness) -> None:
    body = rasa_server.post(webhook_payload("action_support_answer", "rasa-user-7", WATERING)).json()

    turn = rasa_server.store.last_turn_for("rasa", "rasa-user-7")
    assert turn is not None
    assert (turn.question, turn.user_id, turn.channel, turn.route) == (WATERING, "rasa-user-7", "rasa", "domain")
    assert turn.answer == body["responses"][0]["text"]
    assert body["responses"][0]["custom"]["supportbot"]["turn_id"] == turn.id
    assert rasa_server.store.last_turn_for("rasa", "someone-else") is None


def test_retrieval_answer_carries_its_sources(rasa_server: RasaHarness) -> None:
    body = rasa_server.post(webhook_payload("action_support_answer", "u2", SHIPPING)).json()

    (message,) = body["responses"]
    sources = message["custom"]["supportbot"]["sources"]
    assert [(s["title"], s["path"]) for s in sources] == [
        ("Shipping", "knowledge/shipping.md"),
        ("Returns", "knowledge/returns.md"),
    ]
    link_buttons = [b for b in message["buttons"] if b.get("type") == "web_url"]
    # Only the source with a public URL becomes a link; a server-side path means nothing to a customer.
    assert link_buttons == [{
        "title": "Shipping > Live-plant shipping seasons",
        "type": "web_url",
        "url": "https://rareroots.example/policies/shipping",
        "payload": "https://rareroots.example/policies/shipping",
    }]
    assert slot_events(body)["support_route"] == "retrieval"


def test_escalation_hands_off_without_feedback_buttons(rasa_server: RasaHarness) -> None:
    body = rasa_server.post(
        webhook_payload("action_support_answer", "u3", "My orchid arrived dead, I want a refund")
    ).json()

    (message,) = body["responses"]
    assert "a person on the Rare Roots support team" in message["text"]
    assert message["buttons"] == []
    assert slot_events(body)["support_route"] == "escalate"


def test_affirm_and_deny_vote_on_the_senders_last_answer(rasa_server: RasaHarness) -> None:
    rasa_server.post(webhook_payload("action_support_answer", "u4", WATERING))
    rasa_server.post(webhook_payload("action_support_answer", "u4", SHIPPING))
    rasa_server.post(webhook_payload("action_support_answer", "other-user", WATERING))
    last = rasa_server.store.last_turn_for("rasa", "u4")
    assert last is not None and last.question == SHIPPING

    denied = rasa_server.post(webhook_payload("action_support_feedback", "u4", "no, that's wrong", intent="deny"))
    assert denied.status_code == 200
    assert denied.json()["responses"][0]["text"] == THANKS_NOT_HELPFUL
    assert rasa_server.store.feedback_for(last.id) == {"u4": -1}

    affirmed = rasa_server.post(webhook_payload("action_support_feedback", "u4", "/affirm", intent="affirm"))
    assert affirmed.json()["responses"][0]["text"] == THANKS_HELPFUL
    assert rasa_server.store.feedback_for(last.id) == {"u4": 1}  # a second vote replaces the first
    other = rasa_server.store.last_turn_for("rasa", "other-user")
    assert other is not None and rasa_server.store.feedback_for(other.id) == {}


def test_feedback_before_any_answer_records_nothing(rasa_server: RasaHarness) -> None:
    resp = rasa_server.post(webhook_payload("action_support_feedback", "new-user", "yes", intent="affirm"))

    assert resp.status_code == 200
    assert resp.json()["responses"][0]["text"] == NOTHING_TO_RATE
    assert rasa_server.store.vote_totals() == {"up": 0, "down": 0}


def test_feedback_on_a_non_feedback_intent_is_rejected_for_rasa_to_pick_another_action(
    rasa_server: RasaHarness,
) -> None:
    rasa_server.post(webhook_payload("action_support_answer", "u5", WATERING))

    resp = rasa_server.post(webhook_payload("action_support_feedback", "u5", "hello", intent="greet"))

    assert resp.status_code == 400
    assert resp.json()["action_name"] == "action_support_feedback"
    assert "greet" in resp.json()["error"]
    assert rasa_server.store.vote_totals() == {"up": 0, "down": 0}


def test_unknown_action_gets_rasas_404(rasa_server: RasaHarness) -> None:
    resp = rasa_server.post(webhook_payload("action_order_status", "u6", "where is my order?"))

    assert resp.status_code == 404
    assert resp.json() == {
        "error": "No registered action found for name 'action_order_status'.",
        "action_name": "action_order_status",
    }
    assert rasa_server.store.count_turns() == 0


def _without(payload: dict, *path: str) -> dict:
    node = payload
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return payload


@pytest.mark.parametrize(
    ("make_body", "error_part", "action_name"),
    [
        (lambda: b"{not json", "not JSON", ""),
        (lambda: json.dumps(["action_support_answer"]).encode(), "expected a JSON object", ""),
        (lambda: json.dumps(_without(webhook_payload("action_support_answer", "u", WATERING), "tracker")).encode(),
         "'tracker' must be an object", "action_support_answer"),
        (lambda: json.dumps(_without(webhook_payload("action_support_answer", "u", WATERING),
                                     "tracker", "sender_id")).encode(),
         "tracker.sender_id", "action_support_answer"),
        (lambda: json.dumps({**webhook_payload("action_support_feedback", "u", "yes"),
                             "tracker": {"sender_id": "u", "latest_message": "yes"}}).encode(),
         "tracker.latest_message", "action_support_feedback"),
    ],
    ids=["not-json", "json-list", "no-tracker", "no-sender-id", "latest-message-not-object"],
)
def test_malformed_request_gets_a_400_and_the_server_keeps_answering(
    rasa_server: RasaHarness, make_body, error_part: str, action_name: str
) -> None:
    resp = rasa_server.client.post(
        f"{rasa_server.url}/webhook", content=make_body(), headers={"Content-Type": "application/json"}
    )

    assert resp.status_code == 400
    assert error_part in resp.json()["error"]
    assert resp.json()["action_name"] == action_name
    assert rasa_server.store.count_turns() == 0
    after = rasa_server.post(webhook_payload("action_support_answer", "u", WATERING))
    assert after.status_code == 200 and rasa_server.store.count_turns() == 1


def test_missing_domain_asks_rasa_to_resend_it(rasa_server: RasaHarness) -> None:
    payload = webhook_payload("action_support_answer", "u8", WATERING)
    del payload["domain"]

    resp = rasa_server.post(payload)

    assert resp.status_code == 449  # rasa-sdk's "send me the domain" status; Rasa retries with it
    assert resp.json()["action_name"] == "action_support_answer"


def test_deflate_compressed_call_is_answered(rasa_server: RasaHarness) -> None:
    body = zlib.compress(json.dumps(webhook_payload("action_support_answer", "u9", WATERING)).encode())

    resp = rasa_server.client.post(
        f"{rasa_server.url}/webhook",
        content=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "deflate"},
    )

    assert resp.status_code == 200
    assert slot_events(resp.json())["support_route"] == "domain"


def test_pipeline_failure_gives_a_polite_reply_not_a_500(
    rasa_server: RasaHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_answer(self: Pipeline, *args: object, **kwargs: object) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(Pipeline, "answer", broken_answer)
    with caplog.at_level(logging.ERROR, logger="bot.rasa.actions"):
        resp = rasa_server.post(webhook_payload("action_support_answer", "u10", WATERING))

    assert resp.status_code == 200
    assert resp.json()["responses"][0]["text"] == FAILURE_REPLY
    assert "database is locked" not in resp.text
    assert resp.json()["events"] == []
    assert "rasa answer failed sender_id=u10" in caplog.text


def test_health_and_action_list(rasa_server: RasaHarness) -> None:
    assert rasa_server.client.get(f"{rasa_server.url}/health").json() == {"status": "ok"}
    names = {a["name"] for a in rasa_server.client.get(f"{rasa_server.url}/actions").json()}
    assert names == {"action_support_answer", "action_support_feedback"}


def test_a_follow_up_is_read_with_the_trackers_earlier_messages_and_a_new_topic_is_not(
    rasa_server: RasaHarness,
) -> None:
    follow_up = webhook_payload("action_support_answer", "rasa-user-9", "and how much is it?",
                                earlier=["Do you ship to Canada?"])
    body = rasa_server.post(follow_up).json()
    assert body["responses"][0]["custom"]["supportbot"]["route"] == "retrieval", "read with the shipping question"
    turn = rasa_server.store.last_turn_for("rasa", "rasa-user-9")
    # The message first, completed with what it leaves out of the earlier question.
    assert (turn.question, turn.standalone_question) == ("and how much is it?", "and how much is it? (ship, canada)")

    new_topic = webhook_payload("action_support_answer", "rasa-user-9", WATERING,
                                earlier=["Do you ship to Canada?", "and how much is it?"])
    body = rasa_server.post(new_topic).json()
    assert body["responses"][0]["custom"]["supportbot"]["route"] == "domain"
    assert rasa_server.domain_answerer.questions == [WATERING], "asked exactly as typed"


def test_the_action_server_serves_prometheus_metrics_that_count_answers(rasa_server: RasaHarness) -> None:
    from tests.metrics_scrape import scrape, value

    metrics_url = rasa_server.url.rstrip("/") + "/metrics"
    before = scrape(metrics_url)
    rasa_server.post(webhook_payload("action_support_answer", "rasa-metrics", WATERING))
    after = scrape(metrics_url)
    assert value(after, "supportbot_questions_total", channel="rasa") - value(
        before, "supportbot_questions_total", channel="rasa") == 1
    assert value(after, "supportbot_answers_total", route="domain", kind="-") - value(
        before, "supportbot_answers_total", route="domain", kind="-") == 1


def test_a_rasa_restart_and_button_payloads_are_not_context() -> None:
    from types import SimpleNamespace

    from bot.rasa.actions import earlier_user_texts

    def user(text: str, at: float) -> dict:
        return {"event": "user", "text": text, "timestamp": at}

    events = [user("How do I water a Lithops?", 1.0), {"event": "restart", "timestamp": 2.0},
              user("Do you ship to Canada?", 3.0), user("/affirm", 4.0), user("and how much is it?", 5.0)]
    assert earlier_user_texts(SimpleNamespace(events=events), 1800, 3) == ("Do you ship to Canada?",)
    stale = [user("Do you ship to Canada?", 0.0), user("and how much is it?", 4000.0)]
    assert earlier_user_texts(SimpleNamespace(events=stale), 1800, 3) == (), "older than the window"
