"""Ordered, named schema migrations (our tested equivalent of Alembic).

Each migration is a function of a `Connection`, written against the schema *as it was* at that
point (never against today's ORM models), so an old database upgrades step by step and keeps
its rows. Applied names are recorded in `schema_migrations`; `migrate` runs the missing ones
under a database lock (see `migrate`). Add new ones at the end; never edit or reorder old ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine

from bot.conversation_log.schema import utcnow

log = logging.getLogger(__name__)

Migration = Callable[[Connection], None]


def m001_initial(conn: Connection) -> None:
    md = MetaData()
    Table(
        "conversations",
        md,
        Column("id", Integer, primary_key=True),
        Column("channel", String(32), nullable=False),
        Column("conversation_key", String(255), nullable=False),
        Column("user_id", String(255), nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("channel", "conversation_key", name="uq_conversation_key"),
    )
    Table(
        "turns",
        md,
        Column("id", Integer, primary_key=True),
        Column("conversation_id", Integer, ForeignKey("conversations.id"), nullable=False, index=True),
        Column("question", Text, nullable=False),
        Column("route", String(16), nullable=False, index=True),
        Column("confidence", Float, nullable=False),
        Column("route_reason", Text, nullable=False),
        Column("answer", Text, nullable=False),
        Column("sources", JSON, nullable=False),
        Column("model_version", String(64), nullable=False),
        Column("router_version", String(64), nullable=False),
        Column("latency_ms", Float, nullable=False),
        Column("channel", String(32), nullable=False),
        Column("user_id", String(255), nullable=False),
        Column("slack_channel", String(64), nullable=False),
        Column("thread_ts", String(32), nullable=False),
        Column("message_ts", String(32), nullable=False, index=True),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    )
    Table(
        "feedback",
        md,
        Column("id", Integer, primary_key=True),
        Column("turn_id", Integer, ForeignKey("turns.id"), nullable=False, index=True),
        Column("user_id", String(255), nullable=False),
        Column("vote", Integer, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        UniqueConstraint("turn_id", "user_id", name="uq_feedback_vote"),
    )
    Table(
        "staff_labels",
        md,
        Column("id", Integer, primary_key=True),
        Column("turn_id", Integer, ForeignKey("turns.id"), nullable=False, index=True),
        Column("staff_user_id", String(255), nullable=False),
        Column("verdict", String(16), nullable=False),
        Column("corrected_answer", Text, nullable=False),
        Column("correct_route", String(16), nullable=False),
        Column("note", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    )
    Table(
        "processed_events",
        md,
        Column("event_id", String(255), primary_key=True),
        Column("received_at", DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)


def m002_turn_fallback_reason(conn: Connection) -> None:
    """Why a turn did not get its first-choice answer (low confidence, backend down, loop)."""
    conn.execute(text("ALTER TABLE turns ADD COLUMN fallback_reason TEXT NOT NULL DEFAULT ''"))


def m003_turn_delivery(conn: Connection) -> None:
    """Whether Slack took the answer: an undelivered one is kept and re-posted, never lost."""
    conn.execute(text("ALTER TABLE turns ADD COLUMN delivery VARCHAR(16) NOT NULL DEFAULT ''"))
    conn.execute(text("ALTER TABLE turns ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0"))
    timestamp = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
    conn.execute(text(f"ALTER TABLE turns ADD COLUMN delivery_next_at {timestamp}"))
    conn.execute(text("ALTER TABLE turns ADD COLUMN delivery_error TEXT NOT NULL DEFAULT ''"))
    conn.execute(text("CREATE INDEX ix_turns_delivery ON turns (delivery)"))


def m004_turn_answer_kind(conn: Connection) -> None:
    """How a domain answer was made (verified / grounded / generated), for staff and eval."""
    conn.execute(text("ALTER TABLE turns ADD COLUMN answer_kind VARCHAR(16) NOT NULL DEFAULT ''"))


def m005_turn_followup_context(conn: Connection) -> None:
    """A follow-up's standalone form and the earlier turn it was read with; DM history by channel."""
    conn.execute(text("ALTER TABLE turns ADD COLUMN standalone_question TEXT NOT NULL DEFAULT ''"))
    conn.execute(text("ALTER TABLE turns ADD COLUMN context_turn_id INTEGER"))
    conn.execute(text("CREATE INDEX ix_turns_slack_channel ON turns (slack_channel)"))


def m006_turn_handoff_note(conn: Connection) -> None:
    """A "no checked answer" hand-off's note for staff: what the bot found and why it was not enough."""
    conn.execute(text("ALTER TABLE turns ADD COLUMN handoff_note TEXT NOT NULL DEFAULT ''"))


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_initial", m001_initial),
    ("002_turn_fallback_reason", m002_turn_fallback_reason),
    ("003_turn_delivery", m003_turn_delivery),
    ("004_turn_answer_kind", m004_turn_answer_kind),
    ("005_turn_followup_context", m005_turn_followup_context),
    ("006_turn_handoff_note", m006_turn_handoff_note),
]


# pg_advisory_lock key for "a process is migrating this database" (any fixed 64-bit number).
MIGRATION_LOCK_KEY = 0x5355_5050_4F52_5442  # "SUPPORTB"


def _ensure_ledger(conn: Connection) -> None:
    md = MetaData()
    Table(
        "schema_migrations",
        md,
        Column("name", String(128), primary_key=True),
        Column("applied_at", DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)


def _applied(conn: Connection) -> list[str]:
    if not inspect(conn).has_table("schema_migrations"):
        return []
    return [row[0] for row in conn.execute(text("SELECT name FROM schema_migrations"))]


def applied_migrations(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return _applied(conn)


def migrate(engine: Engine, upto: str | None = None) -> list[str]:
    """Apply missing migrations in order (up to and including `upto`); return their names.

    Replicas that start together on one database take turns: on PostgreSQL the run holds an
    advisory lock, on SQLite the database's write lock (`BEGIN IMMEDIATE`), so no process reads
    the ledger while another is between creating a table and recording it. On PostgreSQL each
    migration commits on its own; on SQLite the whole run is one transaction (committing would
    hand the write lock to a waiting process mid-run).
    """
    dialect = engine.dialect.name
    with engine.connect() as conn:
        if dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()
        elif dialect == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            ran = _apply(conn, upto, commit_each=dialect != "sqlite")
            conn.commit()
            return ran
        finally:
            if conn.in_transaction():
                conn.rollback()
            if dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()


def _apply(conn: Connection, upto: str | None, *, commit_each: bool) -> list[str]:
    _ensure_ledger(conn)
    if commit_each:
        conn.commit()
    done = set(_applied(conn))
    ran = []
    for name, fn in MIGRATIONS:
        if name not in done:
            fn(conn)
            conn.execute(
                text("INSERT INTO schema_migrations (name, applied_at) VALUES (:n, :t)"),
                {"n": name, "t": utcnow()},
            )
            if commit_each:
                conn.commit()
            log.info("applied migration %s", name)
            ran.append(name)
        if name == upto:
            break
    return ran
