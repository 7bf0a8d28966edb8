"""Staff labels for retraining: the "Flag for retraining" shortcut, its modal, and label reactions.

Only staff labels reach training data, so every path checks staff first (middleware for the
shortcut, the App Home button and the modal; an explicit check for reactions, which customers
use freely and which are therefore ignored silently rather than refused).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.slack import ids
from bot.slack.blocks import flag_modal, label_saved_text, parse_flag_submission, staff_home_view
from bot.slack.middleware import require_staff
from bot.slack.status import collect_status

if TYPE_CHECKING:
    from bot.conversation_log.schema import Turn
    from bot.slack.app import SlackServices

log = logging.getLogger(__name__)

NOT_AN_ANSWER_TEXT = (
    "I can only flag my own answers: use *Flag for retraining* on a message I posted in reply to a question."
)


def register(app: App, services: SlackServices) -> None:
    staff_only = require_staff(services.staff, services.client)
    store, client = services.store, services.client

    def open_modal(trigger_id: str, turn: Turn) -> None:
        client.views_open(
            trigger_id=trigger_id,
            view=flag_modal(
                turn_id=turn.id,
                question=turn.question,
                answer=turn.answer,
                route=turn.route,
                channel=turn.slack_channel,
                message_ts=turn.message_ts,
                read_as=turn.standalone_question or "",
            ),
        )

    @app.shortcut(ids.FLAG_SHORTCUT, middleware=[staff_only])
    def open_flag_modal(ack: Ack, body: dict[str, Any]) -> None:
        ack()
        channel = (body.get("channel") or {}).get("id", "")
        user = (body.get("user") or {}).get("id", "")
        message_ts = (body.get("message") or {}).get("ts", "")
        turn = store.turn_by_message(channel, message_ts)
        if turn is None:
            client.chat_postEphemeral(channel=channel, user=user, text=NOT_AN_ANSWER_TEXT)
            return
        open_modal(body["trigger_id"], turn)

    @app.action(ids.REVIEW_FROM_HOME, middleware=[staff_only])
    def open_flag_modal_from_home(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        try:
            turn = store.get_turn(int(action.get("value", "")))
        except ValueError:
            turn = None
        if turn is not None:
            open_modal(body["trigger_id"], turn)

    @app.view(ids.FLAG_VIEW, middleware=[staff_only])
    def save_staff_label(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        submission, errors = parse_flag_submission(view)
        if submission is None:
            ack(response_action="errors", errors=errors)
            return
        turn = store.get_turn(submission.turn_id)
        if turn is None:
            ack(response_action="errors", errors={ids.FLAG_VERDICT_BLOCK: "That answer is no longer in the log."})
            return
        staff_user = (body.get("user") or {}).get("id", "")
        # Stored before the ack: if the write fails, the modal stays open with Slack's error and
        # the staff member can submit again, instead of a closed modal and a lost label.
        if submission.verdict == "retracted":
            label_id = store.retract_label(submission.turn_id, staff_user, note=submission.note)
        else:
            label_id = store.add_staff_label(
                submission.turn_id,
                staff_user,
                submission.verdict,
                corrected_answer=submission.corrected_answer,
                correct_route=submission.correct_route,
                note=submission.note,
            )
        ack()
        log.info("staff label=%s turn=%s verdict=%s by=%s", label_id, submission.turn_id, submission.verdict, staff_user)
        refresh_memory(services)
        try:
            if submission.channel:
                text = label_saved_text(
                    submission,
                    answered_route=turn.route,
                    memory_on=services.memory is not None,
                    reuse_policy=services.settings.memory.reuse_policy_corrections,
                    policy_files=sorted({str(src.get("path")) for src in turn.sources or [] if src.get("path")}),
                )
                client.chat_postEphemeral(channel=submission.channel, user=staff_user, text=text)
            else:  # flagged from the App Home: refresh the review list
                status = collect_status(services.settings, store, memory=services.memory)
                client.views_publish(
                    user_id=staff_user, view=staff_home_view(status, services.settings.app.company_name)
                )
        except SlackApiError as exc:
            log.warning("label saved, but confirming it to %s failed (%s)", staff_user, exc.response.get("error"))

    @app.event("reaction_added")
    def label_by_reaction(event: dict[str, Any], body: dict[str, Any]) -> None:
        cfg = services.settings.slack
        verdicts = {cfg.correct_emoji: "correct", cfg.incorrect_emoji: "incorrect"}
        verdict = verdicts.get(str(event.get("reaction") or ""))
        item = event.get("item") or {}
        user = str(event.get("user") or "")
        if verdict is None or item.get("type") != "message" or not services.staff.is_staff(user):
            return
        turn = store.turn_by_message(str(item.get("channel") or ""), str(item.get("ts") or ""))
        if turn is None:
            return
        if not store.claim_event(str(body.get("event_id") or f"reaction:{turn.id}:{user}:{verdict}")):
            return
        store.add_staff_label(turn.id, user, verdict, note=f"reaction :{event.get('reaction')}:")
        log.info("staff label by reaction turn=%s verdict=%s by=%s", turn.id, verdict, user)
        refresh_memory(services)


def refresh_memory(services: SlackServices) -> None:
    """This replica serves the new label at once; the others pick it up within `memory.poll_s`."""
    if services.memory is None:
        return
    try:
        services.memory.refresh()
    except Exception as exc:  # the label is saved; the background poll retries the sync
        log.warning("label saved, but the expert memory could not sync yet (%s: %s)", type(exc).__name__, exc)
