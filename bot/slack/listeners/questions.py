"""Questions: mentions in channels, direct messages, and follow-ups in threads the bot is in."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from slack_bolt import App

from bot.slack.answer_service import Question
from bot.slack.escalation import escalation_key

if TYPE_CHECKING:
    from bot.slack.app import SlackServices

# Plain messages and the two subtypes a person's question can carry; edits, joins and bot posts are not questions.
QUESTION_SUBTYPES = {None, "thread_broadcast", "file_share"}


def strip_mentions(text: str, bot_user_id: str | None) -> str:
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    return " ".join(text.split())


def question_from_event(event: dict[str, Any], event_id: str, bot_user_id: str | None) -> Question | None:
    """The question a message event asks, or None when it is not a person's message."""
    user = event.get("user")
    if not user or event.get("bot_id") or user == bot_user_id:
        return None
    if event.get("subtype") not in QUESTION_SUBTYPES:
        return None
    ts = str(event.get("ts") or "")
    channel = str(event.get("channel") or "")
    if not ts or not channel:
        return None
    return Question(
        text=strip_mentions(str(event.get("text") or ""), bot_user_id),
        user=str(user),
        channel=channel,
        thread_ts=str(event.get("thread_ts") or ts),
        message_ts=ts,
        event_id=event_id,
        # A top-level DM continues the customer's DM conversation (within the window); a thread
        # anywhere, and a mention in a channel, is its own conversation.
        history="slack_channel" if event.get("channel_type") == "im" and not event.get("thread_ts") else "conversation",
    )


def register(app: App, services: SlackServices) -> None:
    @app.event("app_mention")
    def answer_mention(event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        question = question_from_event(event, str(body.get("event_id") or ""), context.bot_user_id)
        if question is not None:
            services.answers.accept(question)

    @app.event("message")
    def answer_direct_message_or_follow_up(event: dict[str, Any], body: dict[str, Any], context: Any) -> None:
        question = question_from_event(event, str(body.get("event_id") or ""), context.bot_user_id)
        if question is None:
            return
        in_thread = question.thread_ts != question.message_ts
        if event.get("channel_type") == "im":
            if in_thread and thread_is_with_a_person(services, question):
                return
            services.answers.accept(question)
            return
        # In channels a mention is answered by the app_mention listener; only follow-ups are ours.
        mentioned = bool(context.bot_user_id) and f"<@{context.bot_user_id}" in str(event.get("text") or "")
        if not in_thread or mentioned:
            return
        if not services.store.last_turn_for("slack", question.conversation_key):
            return  # the bot is not in this thread
        if thread_is_with_a_person(services, question) or services.staff.is_staff(question.user):
            return  # staff talking to the customer, not to the bot
        services.answers.accept(question)


def thread_is_with_a_person(services: SlackServices, question: Question) -> bool:
    """After a hand-off the thread belongs to a person: the bot stops replying unless mentioned."""
    last = services.store.last_turn_for("slack", question.conversation_key)
    if last is None:
        return False
    return last.route == "escalate" or services.store.was_claimed(escalation_key(last.id))
