"""What staff see about the bot's health: today's answers, votes, versions, training, review queue.

Shared by the App Home and `/supportbot status` so both always tell the same story. Reads only
the shared database and files under the state directory, so any replica shows the same numbers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.registry import adapter_registry, router_registry
from bot.training_record import TrainingRun, last_training_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PendingReview:
    """An answer a customer voted down that no staff member has labeled yet."""

    turn_id: int
    question: str
    answer: str
    route: str
    slack_channel: str
    message_ts: str


@dataclass(frozen=True)
class UndeliveredAnswer:
    """An answer Slack has not taken: still being re-posted ("pending") or given up ("failed")."""

    turn_id: int
    question: str
    slack_channel: str
    thread_ts: str
    delivery: str
    attempts: int
    error: str


@dataclass(frozen=True)
class UnansweredQuestion:
    """A question handed to people because nothing checked answered it, with what the bot found."""

    turn_id: int
    question: str
    read_as: str
    note: str
    slack_channel: str
    thread_ts: str


UNANSWERED_DAYS = 7


@dataclass(frozen=True)
class StaffStatus:
    answers_today: dict[str, int]
    votes_today: dict[str, int]
    model_version: str | None
    router_version: str | None
    last_training: TrainingRun | None
    labels_waiting: int
    pending: list[PendingReview]
    undelivered_count: int = 0
    undelivered: list[UndeliveredAnswer] = field(default_factory=list)
    memory_entries: int | None = None  # None: no expert memory in this process
    unanswered_count: int = 0  # "no checked answer" hand-offs in the last UNANSWERED_DAYS days
    unanswered: list[UnansweredQuestion] = field(default_factory=list)


def _parse_time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def collect_status(
    settings: Settings, store: ConversationStore, *, now: datetime | None = None, memory: Any = None
) -> StaffStatus:
    now = now or datetime.now(UTC)
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    last = last_training_run(settings)
    since_training = _parse_time(last.finished_at) if last else None
    pending = [
        PendingReview(
            turn_id=t.id,
            question=t.question,
            answer=t.answer,
            route=t.route,
            slack_channel=t.slack_channel,
            message_ts=t.message_ts,
        )
        for t in store.turns_awaiting_review(settings.slack.home_pending_limit)
    ]
    return StaffStatus(
        answers_today=store.route_counts(since=start_of_day),
        votes_today=store.vote_totals(since=start_of_day),
        model_version=adapter_registry(settings).current_version(),
        router_version=router_registry(settings).current_version(),
        last_training=last,
        labels_waiting=store.count_labels_since(since_training),
        pending=pending,
        undelivered_count=store.count_undelivered(),
        memory_entries=len(memory) if memory is not None else None,
        unanswered_count=store.count_unanswered(since=now - timedelta(days=UNANSWERED_DAYS)),
        unanswered=[
            UnansweredQuestion(t.id, t.question, t.standalone_question, t.handoff_note, t.slack_channel, t.thread_ts)
            for t in store.unanswered_turns(settings.slack.home_pending_limit,
                                            since=now - timedelta(days=UNANSWERED_DAYS))
        ],
        undelivered=[
            UndeliveredAnswer(
                turn_id=t.id,
                question=t.question,
                slack_channel=t.slack_channel,
                thread_ts=t.thread_ts,
                delivery=t.delivery,
                attempts=t.delivery_attempts,
                error=t.delivery_error,
            )
            for t in store.undelivered_turns(settings.slack.home_pending_limit)
        ],
    )
