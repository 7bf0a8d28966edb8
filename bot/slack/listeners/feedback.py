"""Customer votes under an answer, and the "talk to a person" offered after a 👎."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.answerers.escalation import HANDOFF_TEXT
from bot.slack import ids
from bot.slack.blocks import downvote_followup_blocks, feedback_thanks_text

if TYPE_CHECKING:
    from bot.slack.app import SlackServices

log = logging.getLogger(__name__)

ALREADY_ESCALATED_TEXT = "We've already asked a person to help with this; they'll follow up in the thread."
ANSWER_GONE_TEXT = "Sorry, I can't find that answer any more. Please ask your question again."


def _turn_id(action: dict[str, Any]) -> int | None:
    try:
        return int(action.get("value", ""))
    except ValueError:
        log.warning("button %s carried a bad turn id %r", action.get("action_id"), action.get("value"))
        return None


def _where(body: dict[str, Any]) -> tuple[str, str, str]:
    """(channel, user, thread_ts) of a button click."""
    message = body.get("message") or {}
    return (
        (body.get("channel") or {}).get("id", ""),
        (body.get("user") or {}).get("id", ""),
        message.get("thread_ts") or message.get("ts") or "",
    )


def register(app: App, services: SlackServices) -> None:
    def tell(channel: str, user: str, thread_ts: str, text: str, blocks: list[dict] | None = None) -> None:
        try:
            services.client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            log.warning("could not reply to user=%s in %s (%s)", user, channel, exc.response.get("error"))

    def vote(body: dict[str, Any], action: dict[str, Any], value: int) -> None:
        turn_id = _turn_id(action)
        channel, user, thread_ts = _where(body)
        if turn_id is None or not user:
            return
        if services.store.get_turn(turn_id) is None:
            tell(channel, user, thread_ts, ANSWER_GONE_TEXT)
            return
        services.store.record_feedback(turn_id, user, value)
        log.info("feedback turn=%s user=%s vote=%+d", turn_id, user, value)
        if value > 0:
            tell(channel, user, thread_ts, feedback_thanks_text())
        else:
            tell(channel, user, thread_ts, "Sorry that didn't help.", downvote_followup_blocks(turn_id))

    @app.action(ids.FEEDBACK_UP)
    def record_upvote(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        vote(body, action, +1)

    @app.action(ids.FEEDBACK_DOWN)
    def record_downvote(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        vote(body, action, -1)

    @app.action(ids.TALK_TO_PERSON)
    def hand_off_to_a_person(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        turn_id = _turn_id(action)
        channel, user, _ = _where(body)
        if turn_id is None or not user:
            return
        turn = services.store.get_turn(turn_id)
        if turn is None:
            tell(channel, user, "", ANSWER_GONE_TEXT)
            return
        thread_ts = turn.thread_ts or turn.message_ts
        outcome = services.notifier.escalate(
            turn_id=turn.id,
            question=turn.question,
            would_have_said=turn.answer,
            asker=user,
            channel=turn.slack_channel or channel,
            message_ts=turn.message_ts,
            reason="the customer voted the answer down and asked for a person",
            read_as=turn.standalone_question or "",
        )
        if outcome == "already_escalated":
            tell(channel, user, thread_ts, ALREADY_ESCALATED_TEXT)
            return
        text = f"<@{user}> " + HANDOFF_TEXT.format(company=services.settings.app.company_name)
        try:
            services.client.chat_postMessage(channel=turn.slack_channel or channel, thread_ts=thread_ts, text=text)
        except SlackApiError as exc:
            log.error("could not confirm the hand-off of turn %s to user=%s (%s)", turn.id, user, exc.response.get("error"))

    @app.action(ids.OPEN_THREAD)
    def acknowledge_link_button(ack: Ack) -> None:
        ack()  # a link button opens the URL in Slack; the click itself needs no work
