"""From a Slack message to a posted answer: claim, placeholder, answer (streamed), publish.

The listener acks first (Bolt does it for events), then `accept` runs in Bolt's listener pool:
it claims the event in the shared database (a retry or another replica loses the claim), checks
the user's rate, posts "Thinking…" at once and queues the answer on a bounded worker pool. The
worker runs the pipeline, edits the placeholder as text streams in, and replaces it with the
final Block Kit answer. Nothing here raises into Slack: failures are logged with the turn id and
the customer gets a fixed polite reply, never exception text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.answer import Answer, AskContext, PartialCallback
from bot.conversation_log import ConversationStore
from bot.slack.blocks import (
    POLITE_ERROR_TEXT,
    THINKING_TEXT,
    answer_blocks,
    answer_fallback_text,
    rate_limited_text,
    streaming_blocks,
    thinking_blocks,
)
from bot.slack.escalation import StaffNotifier, bot_draft_for_staff
from bot.slack.middleware import QuestionRateLimiter

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0


class AnswersQuestions(Protocol):
    """What the Slack app needs of the pipeline (`bot.pipeline.Pipeline` or a test fake)."""

    def answer(
        self, question: str, ctx: AskContext | None = None, on_partial: PartialCallback | None = None
    ) -> Answer: ...


@dataclass(frozen=True)
class Question:
    text: str
    user: str
    channel: str
    thread_ts: str  # the thread the answer goes into (the message itself when it starts one)
    message_ts: str
    event_id: str

    @property
    def conversation_key(self) -> str:
        return f"{self.channel}:{self.thread_ts}"


class StreamingPreview:
    """Edits the placeholder as the answer streams, at most once per interval, off the model's thread.

    Answerers report the cleaned text so far (not the newest piece), as the domain answerer
    does; the final answer replaces the preview anyway.
    """

    def __init__(
        self,
        client: WebClient,
        channel: str,
        ts: str,
        interval_s: float,
        executor: Executor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.channel = channel
        self.ts = ts
        self.interval_s = interval_s
        self.executor = executor
        self.clock = clock
        self.text = ""
        self.updates_sent = 0
        self._last_sent = clock()
        self._inflight: Future[None] | None = None
        self._closed = False
        self._lock = threading.Lock()

    def push(self, text_so_far: str) -> None:
        with self._lock:
            self.text = text_so_far
            if self._closed or (self._inflight is not None and not self._inflight.done()):
                return
            if self.clock() - self._last_sent < self.interval_s or not self.text.strip():
                return
            self._last_sent = self.clock()
            self._inflight = self.executor.submit(self._send, self.text)

    def _send(self, text: str) -> None:
        try:
            self.client.chat_update(channel=self.channel, ts=self.ts, text=text[:3000], blocks=streaming_blocks(text))
            self.updates_sent += 1
        except SlackApiError as exc:  # a lost preview is harmless; the final answer follows
            log.warning("could not update the streamed preview in %s (%s)", self.channel, exc.response.get("error"))

    def finish(self, timeout_s: float = 30.0) -> None:
        """Stop previews and wait for one in flight, so it cannot land after the final answer."""
        with self._lock:
            self._closed = True
            inflight = self._inflight
        if inflight is not None:
            inflight.exception(timeout=timeout_s)


class AnswerService:
    def __init__(
        self,
        *,
        pipeline: AnswersQuestions,
        store: ConversationStore,
        client: WebClient,
        limiter: QuestionRateLimiter,
        notifier: StaffNotifier,
        answer_executor: Executor,
        preview_executor: Executor,
        stream_interval_s: float,
        rate_limit_per_minute: int,
        event_retention_s: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.client = client
        self.limiter = limiter
        self.notifier = notifier
        self.answer_executor = answer_executor
        self.preview_executor = preview_executor
        self.stream_interval_s = stream_interval_s
        self.rate_limit_per_minute = rate_limit_per_minute
        self.event_retention_s = event_retention_s
        self._clock = clock
        self._next_prune = clock()  # the first question of a process prunes (in the background)
        self._prune_lock = threading.Lock()

    def _maybe_prune_events(self) -> None:
        """At most hourly per process, off the ack path: drop event ids older than the retention."""
        now = self._clock()
        with self._prune_lock:
            if now < self._next_prune:
                return
            self._next_prune = now + PRUNE_EVERY_S
        cutoff = datetime.fromtimestamp(now - self.event_retention_s, tz=UTC)
        self.answer_executor.submit(self._prune, cutoff)

    def _prune(self, cutoff: datetime) -> None:
        try:
            removed = self.store.prune_events(cutoff)
            if removed:
                log.info("pruned %d Slack event ids claimed before %s", removed, cutoff.isoformat())
        except Exception:  # housekeeping must never cost an answer
            log.warning("could not prune old Slack event ids", exc_info=True)

    def accept(self, question: Question) -> bool:
        """Claim and queue a question; False when it was a duplicate or the user is rate limited."""
        self._maybe_prune_events()
        if question.event_id and not self.store.claim_event(question.event_id):
            log.info("event_id=%s already claimed (a Slack retry or another replica); skipping", question.event_id)
            return False
        # The same message can arrive as two events (app_mention and message in a thread).
        if not self.store.claim_event(f"message:{question.channel}:{question.message_ts}"):
            log.info("message %s in %s is already being answered; skipping", question.message_ts, question.channel)
            return False
        if not self.limiter.try_acquire(question.user):
            log.info("rate limited user=%s event_id=%s", question.user, question.event_id)
            self._tell_rate_limited(question)
            return False
        placeholder_ts = self._post_placeholder(question)
        self.answer_executor.submit(self._answer_and_publish, question, placeholder_ts)
        return True

    def _tell_rate_limited(self, question: Question) -> None:
        try:
            self.client.chat_postEphemeral(
                channel=question.channel,
                user=question.user,
                thread_ts=question.thread_ts,
                text=rate_limited_text(self.rate_limit_per_minute),
            )
        except SlackApiError as exc:
            log.warning("could not tell user=%s to slow down (%s)", question.user, exc.response.get("error"))

    def _post_placeholder(self, question: Question) -> str:
        """The ts of "Thinking…", or "" when Slack would not take it (the answer is posted fresh)."""
        try:
            response = self.client.chat_postMessage(
                channel=question.channel,
                thread_ts=question.thread_ts,
                text=THINKING_TEXT,
                blocks=thinking_blocks(),
            )
            return str(response["ts"])
        except SlackApiError as exc:
            log.warning(
                "could not post the placeholder for event_id=%s (%s); answering anyway",
                question.event_id,
                exc.response.get("error"),
            )
            return ""

    def _answer_and_publish(self, question: Question, placeholder_ts: str) -> None:
        ctx = AskContext(
            channel="slack",
            user=question.user,
            conversation_key=question.conversation_key,
            slack_channel=question.channel,
            thread_ts=question.thread_ts,
            event_id=question.event_id,
        )
        preview = (
            StreamingPreview(self.client, question.channel, placeholder_ts, self.stream_interval_s, self.preview_executor)
            if placeholder_ts
            else None
        )
        try:
            answer = self.pipeline.answer(question.text, ctx, on_partial=preview.push if preview else None)
        except Exception:
            log.exception("answering failed event_id=%s user=%s", question.event_id, question.user)
            if preview:
                preview.finish()
            self.publish(question.channel, question.thread_ts, placeholder_ts, POLITE_ERROR_TEXT, None)
            return
        if preview:
            preview.finish()
        if answer.turn_id is not None and placeholder_ts:
            # Link the turn before the answer shows, so a staff flag or vote on it always finds it.
            self.store.set_message_ts(answer.turn_id, placeholder_ts)
        posted_ts = self.publish(
            question.channel, question.thread_ts, placeholder_ts, answer_fallback_text(answer), answer_blocks(answer)
        )
        if posted_ts is None:
            log.error(
                "answer for turn=%s event_id=%s could not be posted to %s thread %s; it is in the log: %r",
                answer.turn_id,
                question.event_id,
                question.channel,
                question.thread_ts,
                answer.text[:500],
            )
            return
        if answer.turn_id is not None:
            if posted_ts != placeholder_ts:
                self.store.set_message_ts(answer.turn_id, posted_ts)
            if answer.route == "escalate":
                self.notifier.escalate(
                    turn_id=answer.turn_id,
                    question=question.text,
                    would_have_said=bot_draft_for_staff(self.pipeline, question.text, ctx),
                    asker=question.user,
                    channel=question.channel,
                    message_ts=posted_ts,
                    reason=answer.fallback_reason or answer.reason,
                )

    def publish(
        self, channel: str, thread_ts: str, placeholder_ts: str, text: str, blocks: list[dict] | None
    ) -> str | None:
        """Replace the placeholder, or post fresh if there is none or it is gone; the ts, or None."""
        if placeholder_ts:
            try:
                self.client.chat_update(channel=channel, ts=placeholder_ts, text=text, blocks=blocks or [])
                return placeholder_ts
            except SlackApiError as exc:
                log.warning("could not replace the placeholder in %s (%s); posting anew", channel, exc.response.get("error"))
        try:
            response = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)
            return str(response["ts"])
        except SlackApiError as exc:
            log.error("could not post to %s thread %s (%s)", channel, thread_ts, exc.response.get("error"))
            return None
