"""All database access of the conversation log.

One `ConversationStore` per process, built from settings at the entry point. Every write is
one transaction that starts with a write (insert-or-ignore), so concurrent writers on SQLite
queue on the lock instead of failing a stale read snapshot, and on Postgres the unique
constraints settle races between replicas.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import case, create_engine, delete, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot import metrics
from bot.conversation_log.migrations import migrate
from bot.conversation_log.schema import (
    Conversation,
    Feedback,
    ProcessedEvent,
    StaffLabel,
    Turn,
    utcnow,
)
from bot.errors import StoreError
from bot.interfaces import Answer, AskContext

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class EarlierTurn:
    """A turn as a later follow-up in its conversation reads it."""

    turn_id: int
    question: str  # as the customer typed it
    standalone_question: str  # as it was routed and answered ("" when it stood alone)
    answer: str
    route: str
    context_turn_id: int | None = None


@dataclass(frozen=True)
class Removed:
    """What a deletion took out of the log (counts, and the ids of the turns it removed)."""

    turns: int = 0
    feedback: int = 0
    labels: int = 0
    conversations: int = 0
    events: int = 0
    turn_ids: tuple[int, ...] = ()
    # The texts the turns held (question, standalone form): to find their copies in training exports.
    texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabeledTurn:
    """A turn with the latest staff label on it: the unit of training data."""

    turn_id: int
    question: str
    answer: str
    route: str
    verdict: str
    corrected_answer: str
    correct_route: str
    staff_user_id: str
    labeled_at: datetime
    standalone_question: str = ""  # a follow-up as it was answered: what training and memory learn

    @property
    def learn_question(self) -> str:
        """The question a label teaches: the standalone form of a follow-up ("and how much is it?"
        means nothing on its own), else the question as typed."""
        return self.standalone_question.strip() or self.question


def make_engine(url: str, echo: bool = False) -> Engine:
    """Create the engine; SQLite gets WAL and a busy timeout so writers wait instead of failing."""
    is_sqlite = url.startswith("sqlite")
    if is_sqlite and url not in ("sqlite://", "sqlite:///:memory:"):
        Path(url.split("sqlite:///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if is_sqlite:
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_engine(url, **kwargs)
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _enter_wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def _enter_wal(cur: Any) -> None:
    """Switch the file to WAL, waiting out a writer that still uses the rollback journal.

    The busy timeout does not cover this one case: on a log no process has opened yet, a second
    replica reads the header (a shared lock) while the first holds its write lock, and SQLite
    answers "database is locked" at once rather than risk a deadlock, so replicas starting
    together on a fresh file could fail here. Retrying until the busy timeout is what the
    timeout promises everywhere else.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.01
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_BUSY" or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


class ConversationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, echo: bool = False) -> ConversationStore:
        """Open (and migrate) the log; every reason it cannot be used becomes a one-line `StoreError`.

        A SQLite file is checked first (`PRAGMA quick_check`, read-only) so a damaged log is
        refused untouched, never migrated; a folder or file that cannot be written is named as
        such instead of blaming database.url. Messages never show a password from the URL.
        """
        from bot.conversation_log.sqlite_file import (
            check_sqlite_log,
            explain_unwritable_log,
            sqlite_file_path,
        )
        from bot.masking import mask_secrets_in_text

        sqlite_file = sqlite_file_path(url)
        if sqlite_file is not None:
            check_sqlite_log(sqlite_file)
        try:
            engine = make_engine(url, echo=echo)
            migrate(engine)
        except (OperationalError, OSError) as exc:  # OSError: the SQLite folder cannot be created
            reason = " ".join(mask_secrets_in_text(str(getattr(exc, "orig", None) or exc)).split())  # one line
            if sqlite_file is not None:
                raise StoreError(
                    explain_unwritable_log(sqlite_file, reason)
                    or f"{sqlite_file}: cannot open the conversation log ({reason}); check that this user "
                    "may read and write it and its folder"
                ) from None
            raise StoreError(
                f"database.url: cannot open the conversation log ({reason}); check the URL, "
                "that the server runs, and SUPPORTBOT_DATABASE_PASSWORD"
            ) from None
        except Exception as exc:  # unknown driver, malformed URL
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"database.url: {' '.join(mask_secrets_in_text(str(exc)).split())} (use e.g. "
                             "sqlite:///var/supportbot.db or postgresql+psycopg://user@host/db)") from None
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _insert_ignore(self, session: Session, model: type, values: dict[str, Any], keys: list[str]) -> int:
        """Insert unless a row with the same unique key exists; return rows inserted (0/1)."""
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
            key_col = getattr(model, keys[0])
            stmt = insert(model).values(**values).on_conflict_do_nothing(index_elements=keys).returning(key_col)
            # RETURNING, not rowcount: psycopg reports rowcount -1 for INSERT .. ON CONFLICT here.
            return len(session.execute(stmt).all())
        if session.execute(select(model).filter_by(**{k: values[k] for k in keys})).first() is not None:
            return 0
        session.add(model(**values))
        session.flush()
        return 1

    # --- turns -----------------------------------------------------------------------------

    def log_turn(self, question: str, answer: Answer, ctx: AskContext) -> int:
        key = ctx.conversation_key or f"{ctx.channel}:{ctx.user}"
        with self._tx() as s:
            self._insert_ignore(
                s,
                Conversation,
                {"channel": ctx.channel, "conversation_key": key, "user_id": ctx.user, "started_at": utcnow()},
                ["channel", "conversation_key"],
            )
            conv_id = s.execute(
                select(Conversation.id).where(
                    Conversation.channel == ctx.channel, Conversation.conversation_key == key
                )
            ).scalar_one()
            turn = Turn(
                conversation_id=conv_id,
                question=question,
                route=answer.route,
                confidence=float(answer.confidence),
                route_reason=answer.reason,
                answer=answer.text,
                sources=[asdict(src) for src in answer.sources],
                model_version=answer.model_version,
                router_version=answer.router_version,
                latency_ms=float(answer.latency_ms),
                channel=ctx.channel,
                user_id=ctx.user,
                slack_channel=ctx.slack_channel,
                thread_ts=ctx.thread_ts,
                message_ts="",
                fallback_reason=answer.fallback_reason,
                answer_kind=answer.kind,
                handoff_note=answer.handoff_note,
                standalone_question=answer.standalone_question,
                context_turn_id=answer.context_turn_id,
                created_at=utcnow(),
            )
            s.add(turn)
            s.flush()
            return turn.id

    def set_message_ts(self, turn_id: int, message_ts: str) -> None:
        """Remember the Slack ts of the posted answer so shortcuts/reactions find the turn."""
        with self._tx() as s:
            s.execute(update(Turn).where(Turn.id == turn_id).values(message_ts=message_ts))

    def get_turn(self, turn_id: int) -> Turn | None:
        with self._sessions() as s:
            return s.get(Turn, turn_id)

    def turn_by_message(self, slack_channel: str, message_ts: str) -> Turn | None:
        with self._sessions() as s:
            return s.execute(
                select(Turn).where(Turn.slack_channel == slack_channel, Turn.message_ts == message_ts)
            ).scalars().first()

    def last_turn_for(self, channel: str, conversation_key: str) -> Turn | None:
        with self._sessions() as s:
            return s.execute(
                select(Turn)
                .join(Conversation)
                .where(Conversation.channel == channel, Conversation.conversation_key == conversation_key)
                .order_by(Turn.id.desc())
            ).scalars().first()

    def earlier_turns(self, ctx: AskContext, *, within: timedelta, limit: int) -> list[EarlierTurn]:
        """The newest `limit` turns of the asker's conversation within `within`, newest first.

        A Slack DM (`ctx.history == "slack_channel"`) is one conversation per DM channel and
        customer, so a top-level message there sees the previous ones."""
        since = utcnow() - within
        stmt = select(Turn).where(Turn.created_at >= since).order_by(Turn.id.desc()).limit(limit)
        if ctx.history == "slack_channel":
            stmt = stmt.where(Turn.channel == ctx.channel, Turn.slack_channel == ctx.slack_channel,
                              Turn.user_id == ctx.user)
        else:
            # Only the asker's own turns: in a channel thread another customer's question is not theirs.
            stmt = stmt.join(Conversation).where(Conversation.channel == ctx.channel,
                                                 Conversation.conversation_key == ctx.conversation_key,
                                                 Turn.user_id == ctx.user)
        with self._sessions() as s:
            return [EarlierTurn(t.id, t.question, t.standalone_question, t.answer, t.route, t.context_turn_id)
                    for t in s.execute(stmt).scalars()]

    # --- retention and erasure ----------------------------------------------------------------

    def delete_turns_before(self, cutoff: datetime, *, batch: int = 500, pause_s: float = 0.05) -> Removed:
        """Retention: every turn older than `cutoff`, with its votes and labels, the conversations
        left empty, and event ids claimed before it. In batches of `batch` turns, each its own short
        transaction with a pause after it, so answers being logged meanwhile never wait long for
        the write lock (a first run may have a large backlog)."""
        turns = feedback = labels = conversations = 0
        while True:
            with self._tx() as s:
                ids = list(s.execute(select(Turn.id).where(Turn.created_at < cutoff).order_by(Turn.id)
                                     .limit(batch)).scalars())
                if not ids:
                    break
                removed = self._delete_turns(s, ids)
            turns, feedback = turns + removed.turns, feedback + removed.feedback
            labels, conversations = labels + removed.labels, conversations + removed.conversations
            time.sleep(pause_s)
        with self._tx() as s:
            events = _affected(s.execute(delete(ProcessedEvent).where(ProcessedEvent.received_at < cutoff)))
        return Removed(turns, feedback, labels, conversations, events)

    def turns_of_user(self, channel: str, user_id: str) -> list[Turn]:
        """Every turn a customer asked on a channel (Slack user id, Rasa sender id), oldest first."""
        with self._sessions() as s:
            return list(s.execute(select(Turn).where(Turn.channel == channel, Turn.user_id == user_id)
                                  .order_by(Turn.id)).scalars())

    def votes_of_user(self, user_id: str) -> list[Feedback]:
        with self._sessions() as s:
            return list(s.execute(select(Feedback).where(Feedback.user_id == user_id).order_by(Feedback.id)).scalars())

    def labels_on(self, turn_ids: list[int]) -> list[StaffLabel]:
        with self._sessions() as s:
            return list(s.execute(select(StaffLabel).where(StaffLabel.turn_id.in_(turn_ids))
                                  .order_by(StaffLabel.id)).scalars()) if turn_ids else []

    def forget_user(self, channel: str, user_id: str) -> Removed:
        """Erasure: a customer's turns, every vote and label on them, their votes on other answers,
        and their conversations. One transaction: a concurrent answer to someone else is untouched."""
        with self._tx() as s:
            ids = list(s.execute(select(Turn.id).where(Turn.channel == channel, Turn.user_id == user_id)).scalars())
            removed = self._delete_turns(s, ids)
            votes = _affected(s.execute(delete(Feedback).where(Feedback.user_id == user_id)))
            conversations = _affected(s.execute(delete(Conversation).where(
                Conversation.channel == channel, Conversation.user_id == user_id,
                ~Conversation.id.in_(select(Turn.conversation_id)))))
        return replace(removed, feedback=removed.feedback + votes, conversations=removed.conversations + conversations)

    @staticmethod
    def _delete_turns(s: Session, ids: list[int]) -> Removed:
        if not ids:
            return Removed()
        texts: list[str] = []
        conversation_ids: set[int] = set()
        for start in range(0, len(ids), 500):  # bound the IN lists (SQLite's variable limit)
            chunk = ids[start:start + 500]
            for question, standalone, conversation_id in s.execute(
                    select(Turn.question, Turn.standalone_question, Turn.conversation_id).where(Turn.id.in_(chunk))):
                texts += [t for t in (question, standalone) if t]
                conversation_ids.add(conversation_id)
        feedback = labels = turns = 0
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            feedback += _affected(s.execute(delete(Feedback).where(Feedback.turn_id.in_(chunk))))
            labels += _affected(s.execute(delete(StaffLabel).where(StaffLabel.turn_id.in_(chunk))))
            turns += _affected(s.execute(delete(Turn).where(Turn.id.in_(chunk))))
        conversations = _affected(s.execute(delete(Conversation).where(
            Conversation.id.in_(list(conversation_ids)), ~Conversation.id.in_(select(Turn.conversation_id)),
        )))
        return Removed(turns, feedback, labels, conversations, 0, tuple(ids), tuple(texts))

    def compact(self) -> None:
        """Give deleted rows' space back, so erased text is not left in free pages (SQLite: VACUUM
        after a WAL checkpoint; Postgres: VACUUM of the four tables)."""
        tables = ("turns", "feedback", "staff_labels", "conversations")
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.exec_driver_sql("VACUUM")
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        elif self.engine.dialect.name == "postgresql":
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for table in tables:
                    conn.exec_driver_sql(f"VACUUM {table}")

    def count_turns(self) -> int:
        with self._sessions() as s:
            return int(s.execute(select(func.count(Turn.id))).scalar_one())

    def recent_turns(self, limit: int = 20) -> list[Turn]:
        with self._sessions() as s:
            return list(s.execute(select(Turn).order_by(Turn.id.desc()).limit(limit)).scalars())

    # --- feedback and labels ---------------------------------------------------------------

    def record_feedback(self, turn_id: int, user_id: str, vote: int) -> None:
        """One vote per user per answer; voting again replaces the earlier vote."""
        if vote not in (1, -1):
            raise ValueError("vote must be +1 or -1")
        now = utcnow()
        with self._tx() as s:
            inserted = self._insert_ignore(
                s,
                Feedback,
                {"turn_id": turn_id, "user_id": user_id, "vote": vote, "created_at": now, "updated_at": now},
                ["turn_id", "user_id"],
            )
            if not inserted:
                s.execute(
                    update(Feedback)
                    .where(Feedback.turn_id == turn_id, Feedback.user_id == user_id)
                    .values(vote=vote, updated_at=now)
                )

    def feedback_for(self, turn_id: int) -> dict[str, int]:
        with self._sessions() as s:
            rows = s.execute(select(Feedback.user_id, Feedback.vote).where(Feedback.turn_id == turn_id))
            return {user: vote for user, vote in rows}

    def add_staff_label(
        self,
        turn_id: int,
        staff_user_id: str,
        verdict: str,
        corrected_answer: str = "",
        correct_route: str = "",
        note: str = "",
    ) -> int:
        if verdict not in ("correct", "incorrect"):
            raise ValueError("verdict must be 'correct' or 'incorrect'")
        if correct_route and correct_route not in ("domain", "retrieval", "escalate"):
            raise ValueError("correct_route must be domain, retrieval or escalate")
        with self._tx() as s:
            label = StaffLabel(
                turn_id=turn_id,
                staff_user_id=staff_user_id,
                verdict=verdict,
                corrected_answer=corrected_answer,
                correct_route=correct_route,
                note=note,
                created_at=utcnow(),
            )
            s.add(label)
            s.flush()
            label_id = label.id
        metrics.LABELS.labels(verdict=verdict).inc()  # after the commit: a failed write is not a label
        return label_id

    def retract_label(self, turn_id: int, staff_user_id: str, note: str = "") -> int:
        """Withdraw the staff label on a turn: it leaves the expert memory and the training data.

        Recorded as a label of its own ("retracted"), so the history of who said what stays in
        the log; a later correct/incorrect label on the same turn counts again.
        """
        with self._tx() as s:
            label = StaffLabel(turn_id=turn_id, staff_user_id=staff_user_id, verdict="retracted",
                               corrected_answer="", correct_route="", note=note, created_at=utcnow())
            s.add(label)
            s.flush()
            label_id = label.id
        metrics.LABELS.labels(verdict="retracted").inc()
        return label_id

    def label_watermark(self) -> tuple[int, int]:
        """(newest label id, label count): changes whenever a label is added, replaced or retracted,
        cheaply enough for every replica to poll it every second."""
        with self._sessions() as s:
            newest, count = s.execute(select(func.max(StaffLabel.id), func.count(StaffLabel.id))).one()
            return int(newest or 0), int(count or 0)

    def labeled_turns(self, since: datetime | None = None) -> list[LabeledTurn]:
        """The latest staff label per turn (a later label overrides an earlier one); turns whose
        latest label is a retraction are left out."""
        with self._sessions() as s:
            latest = (
                select(StaffLabel.turn_id, func.max(StaffLabel.id).label("label_id"))
                .group_by(StaffLabel.turn_id)
                .subquery()
            )
            stmt = (
                select(Turn, StaffLabel)
                .join(latest, latest.c.turn_id == Turn.id)
                .join(StaffLabel, StaffLabel.id == latest.c.label_id)
                .where(StaffLabel.verdict != "retracted")
                .order_by(StaffLabel.id)
            )
            if since is not None:
                stmt = stmt.where(StaffLabel.created_at > since)
            return [
                LabeledTurn(
                    turn_id=t.id,
                    question=t.question,
                    answer=t.answer,
                    route=t.route,
                    verdict=lab.verdict,
                    corrected_answer=lab.corrected_answer,
                    correct_route=lab.correct_route,
                    staff_user_id=lab.staff_user_id,
                    labeled_at=lab.created_at,
                    standalone_question=t.standalone_question or "",
                )
                for t, lab in s.execute(stmt)
            ]

    def count_labels_since(self, since: datetime | None) -> int:
        with self._sessions() as s:
            stmt = select(func.count(StaffLabel.id)).where(StaffLabel.verdict != "retracted")
            if since is not None:
                stmt = stmt.where(StaffLabel.created_at > since)
            return int(s.execute(stmt).scalar_one())

    # --- Slack event de-duplication --------------------------------------------------------

    def claim_event(self, event_id: str) -> bool:
        """True for the first caller with this event id, in any process sharing the database."""
        with self._tx() as s:
            return bool(
                self._insert_ignore(
                    s, ProcessedEvent, {"event_id": event_id, "received_at": utcnow()}, ["event_id"]
                )
            )

    def prune_events(self, before: datetime) -> int:
        """Forget event ids claimed before `before`; returns how many were deleted."""
        with self._tx() as s:
            result = s.execute(delete(ProcessedEvent).where(ProcessedEvent.received_at < before))
            return _affected(result)

    # --- dashboards --------------------------------------------------------------------------

    def route_counts(self, since: datetime | None = None) -> dict[str, int]:
        with self._sessions() as s:
            stmt = select(Turn.route, func.count(Turn.id)).group_by(Turn.route)
            if since is not None:
                stmt = stmt.where(Turn.created_at >= since)
            return {route: int(n) for route, n in s.execute(stmt)}

    def vote_totals(self, since: datetime | None = None) -> dict[str, int]:
        with self._sessions() as s:
            stmt = select(Feedback.vote, func.count(Feedback.id)).group_by(Feedback.vote)
            if since is not None:
                stmt = stmt.where(Feedback.updated_at >= since)
            counts = {int(v): int(n) for v, n in s.execute(stmt)}
        return {"up": counts.get(1, 0), "down": counts.get(-1, 0)}

    # --- Slack app queries (added for issue 6, the Slack app) --------------------------------

    def questions_since(self, user_id: str, since: datetime, channel: str = "slack") -> int:
        """Questions a user asked on a channel since a moment: the shared count behind rate limits."""
        with self._sessions() as s:
            stmt = select(func.count(Turn.id)).where(
                Turn.channel == channel, Turn.user_id == user_id, Turn.created_at >= since
            )
            return int(s.execute(stmt).scalar_one())

    def turns_awaiting_review(self, limit: int = 10) -> list[Turn]:
        """Answers some customer voted 👎 on that no staff member has labeled yet, newest first."""
        with self._sessions() as s:
            labeled = select(StaffLabel.turn_id)
            downvoted = select(Feedback.turn_id).where(Feedback.vote == -1)
            stmt = (
                select(Turn)
                .where(Turn.id.in_(downvoted), Turn.id.not_in(labeled))
                .order_by(Turn.id.desc())
                .limit(limit)
            )
            return list(s.execute(stmt).scalars())

    def unanswered_turns(self, limit: int = 10, since: datetime | None = None) -> list[Turn]:
        """Questions handed off because nothing checked answered them ("no_answer"), newest first."""
        with self._sessions() as s:
            stmt = select(Turn).where(Turn.answer_kind == "no_answer")
            if since is not None:
                stmt = stmt.where(Turn.created_at >= since)
            return list(s.execute(stmt.order_by(Turn.id.desc()).limit(limit)).scalars())

    def count_unanswered(self, since: datetime | None = None) -> int:
        with self._sessions() as s:
            stmt = select(func.count()).select_from(Turn).where(Turn.answer_kind == "no_answer")
            if since is not None:
                stmt = stmt.where(Turn.created_at >= since)
            return int(s.execute(stmt).scalar_one())

    def was_claimed(self, event_id: str) -> bool:
        """Whether some replica already claimed this id (e.g. an escalation), without claiming it."""
        with self._sessions() as s:
            return s.get(ProcessedEvent, event_id) is not None

    def release_event(self, *event_ids: str) -> None:
        """Un-claim events whose question could not be stored, so Slack's retry is answered."""
        with self._tx() as s:
            s.execute(delete(ProcessedEvent).where(ProcessedEvent.event_id.in_(event_ids)))

    # --- Slack delivery of answers ------------------------------------------------------------

    def mark_delivered(self, turn_id: int, message_ts: str) -> None:
        """The answer is in Slack at `message_ts`; a pending turn becomes "delivered"."""
        with self._tx() as s:
            s.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(
                    message_ts=message_ts,
                    delivery=case((Turn.delivery.in_(("pending", "failed")), "delivered"), else_=Turn.delivery),
                    delivery_next_at=None,
                )
            )

    def mark_undelivered(self, turn_id: int, error: str, next_at: datetime) -> None:
        """Slack did not take the answer: keep it pending, to be re-posted from `next_at` on."""
        with self._tx() as s:
            s.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(delivery="pending", delivery_next_at=next_at, delivery_error=error[:500],
                        delivery_attempts=Turn.delivery_attempts + 1)
            )

    def claim_due_deliveries(self, now: datetime, lease_until: datetime, limit: int = 20) -> list[Turn]:
        """Pending answers due a new attempt, each leased to this caller alone until `lease_until`.

        The conditional update is the lease: of two replicas polling at once, only one moves
        `delivery_next_at` forward, so an answer is never re-posted twice in parallel.
        """
        claimed: list[Turn] = []
        with self._sessions() as s:
            due = list(
                s.execute(
                    select(Turn.id)
                    .where(Turn.delivery == "pending", Turn.delivery_next_at <= now)
                    .order_by(Turn.id)
                    .limit(limit)
                ).scalars()
            )
        for turn_id in due:
            with self._tx() as s:
                result = s.execute(
                    update(Turn)
                    .where(Turn.id == turn_id, Turn.delivery == "pending", Turn.delivery_next_at <= now)
                    .values(delivery_next_at=lease_until)
                )
                if _affected(result) == 1:
                    turn = s.get(Turn, turn_id)
                    if turn is not None:
                        claimed.append(turn)
        return claimed

    def mark_delivery_failed(self, turn_id: int, error: str) -> None:
        """Given up: staff see the answer as undelivered in App Home and /supportbot status."""
        with self._tx() as s:
            s.execute(
                update(Turn)
                .where(Turn.id == turn_id)
                .values(delivery="failed", delivery_next_at=None, delivery_error=error[:500])
            )

    def undelivered_turns(self, limit: int = 10) -> list[Turn]:
        """Answers Slack has not taken yet (pending) or that were given up (failed), newest first."""
        with self._sessions() as s:
            return list(
                s.execute(
                    select(Turn).where(Turn.delivery.in_(("pending", "failed"))).order_by(Turn.id.desc()).limit(limit)
                ).scalars()
            )

    def count_undelivered(self) -> int:
        with self._sessions() as s:
            stmt = select(func.count(Turn.id)).where(Turn.delivery.in_(("pending", "failed")))
            return int(s.execute(stmt).scalar_one())


def _affected(result: Any) -> int:
    """Rows an UPDATE or DELETE touched (SQLAlchemy types `execute` as a plain `Result`, which
    has no rowcount; a DML statement returns a `CursorResult`, which does)."""
    return int(getattr(result, "rowcount", 0) or 0)
