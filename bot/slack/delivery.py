"""Answers Slack did not take are re-posted until they are delivered, or handed to staff.

The answer is in the conversation log before Slack is asked to show it, so a network error,
a 5xx or a 429 that outlasts the client's retries costs a delay, never the answer. The turn is
marked pending with the time of its next attempt; every replica polls for due turns, and a
conditional update leases each one to a single replica, so no answer is posted twice in
parallel. Attempts back off exponentially; after `slack.delivery_give_up_hours` the turn is
marked failed, and App Home and `/supportbot status` list it for a person to follow up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.conversation_log import ConversationStore
from bot.conversation_log.schema import Turn
from bot.interfaces import Answer, AskContext, Source
from bot.slack.blocks import answer_blocks, answer_fallback_text

if TYPE_CHECKING:
    from bot.slack.answer_service import AnswerService

log = logging.getLogger(__name__)

# Longer than one attempt can take (the client's own retries with back-off), so a replica
# never re-posts an answer another replica is still posting.
DELIVERY_LEASE_S = 180.0
_SOURCE_FIELDS = {f.name for f in fields(Source)}


def answer_from_turn(turn: Turn) -> Answer:
    """The logged turn as the `Answer` it was, to render the same message again."""
    return Answer(
        text=turn.answer,
        route=turn.route,  # type: ignore[arg-type]
        confidence=turn.confidence,
        reason=turn.route_reason,
        sources=[Source(**{k: v for k, v in src.items() if k in _SOURCE_FIELDS}) for src in turn.sources or []],
        latency_ms=turn.latency_ms,
        turn_id=turn.id,
        model_version=turn.model_version,
        router_version=turn.router_version,
        fallback_reason=turn.fallback_reason,
        kind=turn.answer_kind,
        standalone_question=turn.standalone_question or "",
        context_turn_id=turn.context_turn_id,
        handoff_note=turn.handoff_note or "",
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class DeliveryRetrier:
    def __init__(
        self,
        answers: AnswerService,
        store: ConversationStore,
        *,
        poll_s: float,
        retry_s: float,
        retry_max_s: float,
        give_up_s: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.answers = answers
        self.store = store
        self.poll_s = poll_s
        self.retry_s = retry_s
        self.retry_max_s = retry_max_s
        self.give_up_s = give_up_s
        self.now = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> DeliveryRetrier:
        self._thread = threading.Thread(target=self._loop, name="slack-delivery", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.run_once()
            except Exception as exc:  # the database may be briefly away; the next poll tries again
                log.warning("delivery retry pass failed (%s: %s)", type(exc).__name__, exc)

    def run_once(self) -> int:
        """Try every due undelivered answer once; how many were delivered."""
        now = self.now()
        delivered = 0
        for turn in self.store.claim_due_deliveries(now, now + timedelta(seconds=DELIVERY_LEASE_S)):
            if self._stop.is_set() and delivered:
                break
            delivered += self._deliver(turn, now)
        return delivered

    def _deliver(self, turn: Turn, now: datetime) -> int:
        answer = answer_from_turn(turn)
        posted_ts, error = self.answers.try_publish(
            turn.slack_channel, turn.thread_ts, turn.message_ts, answer_fallback_text(answer), answer_blocks(answer)
        )
        if posted_ts is not None:
            self.store.mark_delivered(turn.id, posted_ts)
            log.info("delivered turn=%s to %s thread %s after %d failed attempt(s)",
                     turn.id, turn.slack_channel, turn.thread_ts, turn.delivery_attempts)
            if answer.route == "escalate":
                ctx = AskContext(channel="slack", user=turn.user_id, slack_channel=turn.slack_channel,
                                 thread_ts=turn.thread_ts, conversation_key=f"{turn.slack_channel}:{turn.thread_ts}")
                self.answers.escalate_posted(answer, turn.question, ctx, posted_ts)
            return 1
        age_s = (now - _aware(turn.created_at)).total_seconds()
        if age_s >= self.give_up_s:
            self.store.mark_delivery_failed(turn.id, error)
            log.error("gave up delivering turn=%s to %s thread %s after %d attempts (%s); staff see it as undelivered",
                      turn.id, turn.slack_channel, turn.thread_ts, turn.delivery_attempts + 1, error)
            return 0
        delay = min(self.retry_max_s, self.retry_s * 2 ** max(0, turn.delivery_attempts))
        self.store.mark_undelivered(turn.id, error, now + timedelta(seconds=delay))
        log.warning("turn=%s still not delivered (%s); next attempt in %.0fs", turn.id, error, delay)
        return 0
