"""SQLAlchemy 2.x models of the conversation log.

The tables mirror what a support team asks of its history: what was asked, which route
answered and how sure it was, what customers voted, what staff corrected, and which Slack
events were already handled (so a retried event is never answered twice, even across
replicas that share the database).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("channel", "conversation_key", name="uq_conversation_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    conversation_key: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255), default="")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    turns: Mapped[list[Turn]] = relationship(back_populates="conversation")


class Turn(Base):
    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    question: Mapped[str] = mapped_column(Text)
    route: Mapped[str] = mapped_column(String(16), index=True)
    confidence: Mapped[float] = mapped_column(Float)
    route_reason: Mapped[str] = mapped_column(Text, default="")
    answer: Mapped[str] = mapped_column(Text)
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model_version: Mapped[str] = mapped_column(String(64), default="")
    router_version: Mapped[str] = mapped_column(String(64), default="")
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(255), default="")
    slack_channel: Mapped[str] = mapped_column(String(64), default="", index=True)
    thread_ts: Mapped[str] = mapped_column(String(32), default="")
    message_ts: Mapped[str] = mapped_column(String(32), default="", index=True)
    fallback_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    # Slack delivery: "" (not Slack, or posted on the first try), "pending" (Slack did not take
    # it; re-posted from delivery_next_at on), "delivered" (posted after a retry), "failed"
    # (given up; staff see it). The answer text stays in the log either way.
    delivery: Mapped[str] = mapped_column(String(16), default="", index=True)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivery_next_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    delivery_error: Mapped[str] = mapped_column(Text, default="")
    # How the answer was made (bot.interfaces.Draft.kind): verified | similar | excerpt | grounded |
    # generated | policy | escalation | no_answer ("" in turns logged before kinds existed).
    answer_kind: Mapped[str] = mapped_column(String(16), default="")
    # A "no checked answer" hand-off: what the bot found and why it was not enough (staff only).
    handoff_note: Mapped[str] = mapped_column(Text, default="")
    # A follow-up read with its conversation: the question as routed and answered ("" when the
    # message stood alone) and the earlier turn it was read with.
    standalone_question: Mapped[str] = mapped_column(Text, default="")
    context_turn_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    conversation: Mapped[Conversation] = relationship(back_populates="turns")


class Feedback(Base):
    """A customer's 👍/👎 on one answer; one row per (turn, user), a changed vote updates it."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("turn_id", "user_id", name="uq_feedback_vote"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    vote: Mapped[int] = mapped_column(Integer)  # +1 or -1
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class StaffLabel(Base):
    """A staff verdict on an answer: the only thing that reaches training data."""

    __tablename__ = "staff_labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id"), index=True)
    staff_user_id: Mapped[str] = mapped_column(String(255))
    verdict: Mapped[str] = mapped_column(String(16))  # correct | incorrect | retracted (withdraws the turn's label)
    corrected_answer: Mapped[str] = mapped_column(Text, default="")
    correct_route: Mapped[str] = mapped_column(String(16), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ProcessedEvent(Base):
    """Event ids already claimed by some replica; the primary key settles races."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
