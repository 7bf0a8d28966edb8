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

from bot import metrics
from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext, PartialCallback
from bot.question_input import TOO_LONG_REASON, clean_question
from bot.slack.blocks import (
    POLITE_ERROR_TEXT,
    THINKING_TEXT,
    answer_blocks,
    answer_fallback_text,
    rate_limited_text,
    streaming_blocks,
    thinking_blocks,
)
from bot.slack.client import RETRYABLE_API_ERRORS, RETRYABLE_STATUS
from bot.slack.escalation import StaffNotifier
from bot.slack.middleware import QuestionRateLimiter

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0
TRANSIENT_API_ERRORS = RETRYABLE_API_ERRORS | {"slack_unreachable"}
STAFF_QUESTION_CHARS = 2000  # of the customer's question, quoted in the staff channel


class AnswersQuestions(Protocol):
    """What the Slack app needs of the pipeline (`bot.pipeline.Pipeline` or a test fake)."""

    def answer(
        self, question: str, ctx: AskContext | None = None, on_partial: PartialCallback | None = None
    ) -> Answer: ...

    def staff_draft(self, question: str, ctx: AskContext) -> str:
        """What the bot would have said, for the staff note of an escalation ("" if nothing)."""
        ...


@dataclass(frozen=True)
class Question:
    text: str
    user: str
    channel: str
    thread_ts: str  # the thread the answer goes into (the message itself when it starts one)
    message_ts: str
    event_id: str
    history: str = "conversation"  # see AskContext.history

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
        delivery_retry_s: float = 5.0,
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
        self.delivery_retry_s = delivery_retry_s
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
        message_key = f"message:{question.channel}:{question.message_ts}"
        if not self.store.claim_event(message_key):
            log.info("message %s in %s is already being answered; skipping", question.message_ts, question.channel)
            return False
        claims = tuple(key for key in (question.event_id, message_key) if key)
        try:
            if not self.limiter.try_acquire(question.user):
                log.info("rate limited user=%s event_id=%s", question.user, question.event_id)
                self._tell_rate_limited(question)
                return False
            placeholder_ts = self._post_placeholder(question)
            metrics.ANSWER_QUEUE.inc()
            try:
                self.answer_executor.submit(self._answer_counted, question, placeholder_ts, claims)
            except Exception:
                metrics.ANSWER_QUEUE.dec()  # never queued
                raise
        except Exception:
            # Nothing is stored yet: give the claim back so Slack's retry of this event is answered.
            self._release_claims(claims)
            raise
        return True

    def _release_claims(self, claims: tuple[str, ...]) -> None:
        try:
            self.store.release_event(*claims)
        except Exception as exc:
            log.error("could not release event claims %s (%s: %s)", claims, type(exc).__name__, exc)

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
        except (SlackApiError, KeyError) as exc:
            log.warning(
                "could not post the placeholder for event_id=%s (%s); answering anyway",
                question.event_id,
                _slack_error(exc),
            )
            return ""

    def _answer_counted(self, question: Question, placeholder_ts: str, claims: tuple[str, ...]) -> None:
        """The queued job: the answer queue gauge counts it until it is done, however it ends."""
        try:
            self._answer_and_publish(question, placeholder_ts, claims)
        finally:
            metrics.ANSWER_QUEUE.dec()

    def _answer_and_publish(self, question: Question, placeholder_ts: str, claims: tuple[str, ...] = ()) -> None:
        ctx = AskContext(
            channel="slack",
            user=question.user,
            conversation_key=question.conversation_key,
            slack_channel=question.channel,
            thread_ts=question.thread_ts,
            event_id=question.event_id,
            history=question.history,
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
            self._release_claims(claims)  # nothing was stored: a retry of this event may try again
            self.publish(question.channel, question.thread_ts, placeholder_ts, POLITE_ERROR_TEXT, None)
            return
        if preview:
            preview.finish()
        if answer.turn_id is None:
            # The log could not store the turn (the pipeline said why); the customer still gets
            # the answer, and the claim is released, as the event is not safely handled.
            self._release_claims(claims)
        elif placeholder_ts:
            # Link the turn before the answer shows, so a staff flag or vote on it always finds it.
            self._store_quietly(self.store.set_message_ts, answer.turn_id, placeholder_ts)
        posted_ts, error = self.try_publish(
            question.channel, question.thread_ts, placeholder_ts, answer_fallback_text(answer), answer_blocks(answer)
        )
        if posted_ts is None:
            if answer.turn_id is None:
                log.error("answer for event_id=%s could not be posted (%s) nor logged", question.event_id, error)
                return
            next_at = datetime.fromtimestamp(self._clock() + self.delivery_retry_s, tz=UTC)
            self._store_quietly(self.store.mark_undelivered, answer.turn_id, error, next_at)
            log.warning(
                "answer for turn=%s event_id=%s not delivered to %s thread %s (%s); kept in the log, "
                "re-posting from %s",
                answer.turn_id, question.event_id, question.channel, question.thread_ts, error,
                next_at.isoformat(timespec="seconds"),
            )
            return
        if answer.turn_id is not None:
            if posted_ts != placeholder_ts:
                self._store_quietly(self.store.set_message_ts, answer.turn_id, posted_ts)
            if answer.route == "escalate":
                self.escalate_posted(answer, question.text, ctx, posted_ts)

    def escalate_posted(self, answer: Answer, question_text: str, ctx: AskContext, posted_ts: str) -> None:
        """Tell staff about an escalation once the customer can see the hand-off message."""
        assert answer.turn_id is not None
        question_text = clean_question(question_text)
        too_long = answer.reason == TOO_LONG_REASON  # no model may see it, not even for a staff draft
        asked = answer.standalone_question or question_text  # a follow-up as it was read
        no_answer = answer.kind == "no_answer"
        self.notifier.escalate(
            turn_id=answer.turn_id,
            question=question_text[:STAFF_QUESTION_CHARS] + ("…" if len(question_text) > STAFF_QUESTION_CHARS else ""),
            # A "no checked answer" hand-off already weighed every draft: its note says what they were.
            would_have_said="" if too_long or no_answer else self.pipeline.staff_draft(asked, ctx),
            read_as=answer.standalone_question[:STAFF_QUESTION_CHARS],
            asker=ctx.user,
            channel=ctx.slack_channel,
            message_ts=posted_ts,
            reason=answer.fallback_reason or answer.reason,
            no_answer_note=(answer.handoff_note or answer.fallback_reason or "nothing found") if no_answer else "",
        )

    def _store_quietly(self, write: Callable[..., None], *args: object) -> None:
        """A bookkeeping write that fails must not stop the answer from being posted."""
        try:
            write(*args)
        except Exception as exc:
            log.error("conversation log write %s failed (%s: %s)", write.__name__, type(exc).__name__, exc)

    def publish(
        self, channel: str, thread_ts: str, placeholder_ts: str, text: str, blocks: list[dict] | None
    ) -> str | None:
        """Replace the placeholder, or post fresh if there is none or it is gone; the ts, or None."""
        return self.try_publish(channel, thread_ts, placeholder_ts, text, blocks)[0]

    def try_publish(
        self, channel: str, thread_ts: str, placeholder_ts: str, text: str, blocks: list[dict] | None
    ) -> tuple[str | None, str]:
        """`publish`, plus Slack's error when nothing was posted (for the log and the retry)."""
        if placeholder_ts:
            try:
                self.client.chat_update(channel=channel, ts=placeholder_ts, text=text, blocks=blocks or [])
                return placeholder_ts, ""
            except SlackApiError as exc:
                if _is_transient(exc):
                    # Posting anew would likely fail the same way, and leave "Thinking…" behind if
                    # it did not: keep the answer pending and replace the placeholder later.
                    log.warning("could not replace the placeholder in %s (%s); will retry", channel, _slack_error(exc))
                    return None, _slack_error(exc)
                log.warning("could not replace the placeholder in %s (%s); posting anew", channel, _slack_error(exc))
        try:
            response = self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)
            return str(response["ts"]), ""
        except (SlackApiError, KeyError) as exc:
            log.error("could not post to %s thread %s (%s)", channel, thread_ts, _slack_error(exc))
            return None, _slack_error(exc)


def _is_transient(exc: SlackApiError) -> bool:
    """Slack was away or overloaded (after the client's retries), as opposed to refusing this call."""
    response = exc.response
    if response is None:
        return True
    status = getattr(response, "status_code", 200)
    return status == 0 or status in RETRYABLE_STATUS or response.get("error") in TRANSIENT_API_ERRORS


def _slack_error(exc: Exception) -> str:
    """Slack's short error code ("ratelimited", "slack_unreachable", …) for logs and the delivery record."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        error = str(response.get("error") or "") if response is not None else ""
        detail = response.get("detail") if response is not None else None
        return f"{error}: {detail}" if detail else error or str(exc)
    return f"{type(exc).__name__}: {exc}"
