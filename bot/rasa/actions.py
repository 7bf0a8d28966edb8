"""The two custom actions a Rasa assistant calls: answer a question, record feedback on it.

Actions are instances holding the pipeline and the store built once at the entry point, and
are registered on an `ActionExecutor` by `build_action_executor`; rasa-sdk's usual discovery
of `Action` subclasses by module scan is not used, so nothing loads at import time and tests
can hand in a pipeline made of fakes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher
from rasa_sdk.interfaces import ActionExecutionRejection

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext
from bot.pipeline import Pipeline

log = logging.getLogger(__name__)

CHANNEL = "rasa"
ACTION_SUPPORT_ANSWER = "action_support_answer"
ACTION_SUPPORT_FEEDBACK = "action_support_feedback"
SLOT_ROUTE = "support_route"
SLOT_CONFIDENCE = "support_confidence"
CUSTOM_KEY = "supportbot"

FAILURE_REPLY = "Sorry, I couldn't look that up just now. Please try again in a moment."
THANKS_HELPFUL = "Thanks for letting me know that helped."
THANKS_NOT_HELPFUL = "Thanks for telling me. I've noted that this answer didn't help, so the team can improve it."
NOTHING_TO_RATE = "There is no answer of mine to rate yet. Ask me a question first."
HELPFUL_BUTTON = "👍 Helpful"
NOT_HELPFUL_BUTTON = "👎 Not helpful"


def latest_user_text(tracker: Tracker) -> str:
    """The text of the message that triggered the action ('' when Rasa sent none)."""
    text = tracker.latest_message.get("text") if isinstance(tracker.latest_message, dict) else None
    return text if isinstance(text, str) else ""


def earlier_user_texts(tracker: Tracker, window_s: float, limit: int) -> tuple[str, ...]:
    """The sender's user messages before the latest one, oldest first: Rasa's tracker is the
    conversation (it holds messages Rasa answered itself too). Only those within `window_s` of
    the latest message count, and at most `limit`; the text of a malformed event is skipped."""
    events = tracker.events if isinstance(getattr(tracker, "events", None), list) else []
    # A restart or a new session ends the conversation; "/affirm" and the like are button payloads.
    starts = [i for i, e in enumerate(events) if isinstance(e, dict) and e.get("event") in ("restart", "session_started")]
    events = events[starts[-1] + 1:] if starts else events
    users = [e for e in events if isinstance(e, dict) and e.get("event") == "user"
             and isinstance(e.get("text"), str) and e["text"].strip() and not e["text"].lstrip().startswith("/")]
    if len(users) < 2:
        return ()
    latest = users[-1].get("timestamp")
    earlier = []
    for event in users[:-1]:
        stamp = event.get("timestamp")
        if isinstance(latest, int | float) and isinstance(stamp, int | float) and latest - stamp > window_s:
            continue
        earlier.append(event["text"].strip())
    return tuple(earlier[-limit:])


def latest_intent_name(tracker: Tracker) -> str:
    intent = tracker.latest_message.get("intent") if isinstance(tracker.latest_message, dict) else None
    name = intent.get("name") if isinstance(intent, dict) else None
    return name if isinstance(name, str) else ""


def answer_message(answer: Answer, affirm_intent: str | None, deny_intent: str | None) -> dict[str, Any]:
    """The `utter_message` arguments for an answer, as a pure function so it can be tested alone.

    Sources travel twice: structured in the custom payload (for channels and front ends that
    render citations themselves) and as link buttons for those that have a URL, because a
    local file path means nothing to a customer. Feedback buttons send the affirm/deny intents
    back, so a click reaches `action_support_feedback` through the assistant's own stories.
    """
    buttons: list[dict[str, Any]] = []
    for src in answer.sources:
        if src.url:
            title = f"{src.title} > {src.heading}" if src.heading else src.title
            buttons.append({"title": title, "type": "web_url", "url": src.url, "payload": src.url})
    if answer.route != "escalate":
        if affirm_intent:
            buttons.append({"title": HELPFUL_BUTTON, "payload": f"/{affirm_intent}"})
        if deny_intent:
            buttons.append({"title": NOT_HELPFUL_BUTTON, "payload": f"/{deny_intent}"})
    custom = {
        CUSTOM_KEY: {
            "route": answer.route,
            "confidence": answer.confidence,
            "reason": answer.reason,
            "turn_id": answer.turn_id,
            "fallback_reason": answer.fallback_reason,
            "sources": [asdict(src) for src in answer.sources],
        }
    }
    return {"text": answer.text, "buttons": buttons, "json_message": custom}


class SupportAnswerAction(Action):
    """Answers the latest user message through the same pipeline Slack and the CLI use."""

    def __init__(self, settings: Settings, pipeline: Pipeline) -> None:
        self.settings = settings
        self.pipeline = pipeline
        # Created lazily: a semaphore belongs to the event loop of the server that runs it.
        self._slots: asyncio.Semaphore | None = None

    def name(self) -> str:
        return ACTION_SUPPORT_ANSWER

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        sender_id = str(tracker.sender_id)
        question = latest_user_text(tracker)
        ctx = AskContext(
            channel=CHANNEL,
            user=sender_id,
            conversation_key=sender_id,
            event_id=str(tracker.latest_message.get("message_id") or ""),
            history="none",  # the tracker, not the log, is a Rasa conversation
            earlier_questions=earlier_user_texts(
                tracker, self.settings.conversation.window_minutes * 60, self.settings.conversation.max_turns
            ),
        )
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.rasa.answer_threads)
        try:
            # The models run for seconds on CPU: off the event loop, so health checks and
            # other conversations are not frozen behind one answer.
            async with self._slots:
                answer = await asyncio.to_thread(self.pipeline.answer, question, ctx)
        except Exception:  # the boundary: the customer gets a polite reply, the log gets the trace
            log.exception("rasa answer failed sender_id=%s event_id=%s", sender_id, ctx.event_id)
            dispatcher.utter_message(text=FAILURE_REPLY)
            return []
        rasa = self.settings.rasa
        dispatcher.utter_message(
            **answer_message(
                answer,
                rasa.affirm_intents[0] if rasa.affirm_intents else None,
                rasa.deny_intents[0] if rasa.deny_intents else None,
            )
        )
        log.info(
            "rasa answered sender_id=%s turn=%s route=%s latency_ms=%.0f",
            sender_id,
            answer.turn_id,
            answer.route,
            answer.latency_ms,
        )
        return [SlotSet(SLOT_ROUTE, answer.route), SlotSet(SLOT_CONFIDENCE, answer.confidence)]


class SupportFeedbackAction(Action):
    """Records the user's affirm/deny intent as a vote on the last answer in this conversation.

    Any other intent is rejected, which tells Rasa to predict a different action instead of
    silently recording a vote nobody gave.
    """

    def __init__(self, settings: Settings, store: ConversationStore) -> None:
        self.settings = settings
        self.store = store

    def name(self) -> str:
        return ACTION_SUPPORT_FEEDBACK

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        intent = latest_intent_name(tracker)
        if intent in self.settings.rasa.affirm_intents:
            vote = 1
        elif intent in self.settings.rasa.deny_intents:
            vote = -1
        else:
            raise ActionExecutionRejection(
                ACTION_SUPPORT_FEEDBACK,
                f"intent '{intent or '(none)'}' is not one of the feedback intents "
                f"{self.settings.rasa.affirm_intents + self.settings.rasa.deny_intents} "
                "(rasa.affirm_intents / rasa.deny_intents)",
            )
        sender_id = str(tracker.sender_id)
        turn = await asyncio.to_thread(self.store.last_turn_for, CHANNEL, sender_id)
        if turn is None:
            dispatcher.utter_message(text=NOTHING_TO_RATE)
            return []
        await asyncio.to_thread(self.store.record_feedback, turn.id, sender_id, vote)
        log.info("rasa feedback sender_id=%s turn=%s vote=%+d", sender_id, turn.id, vote)
        dispatcher.utter_message(text=THANKS_HELPFUL if vote > 0 else THANKS_NOT_HELPFUL)
        return []


def build_action_executor(settings: Settings, pipeline: Pipeline, store: ConversationStore) -> ActionExecutor:
    """An executor with both actions bound to this process's pipeline and store."""
    executor = ActionExecutor()
    executor.register_action(SupportAnswerAction(settings, pipeline))
    executor.register_action(SupportFeedbackAction(settings, store))
    return executor
