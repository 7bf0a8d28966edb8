"""The conversation log keeps every turn, vote and label, under concurrency and across upgrades."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import inspect, text

from bot.conversation_log import ConversationStore
from bot.conversation_log.migrations import MIGRATIONS, applied_migrations, migrate
from bot.conversation_log.store import make_engine
from bot.interfaces import Answer, AskContext, Source


def sample_answer(text_: str = "Ships in 2 days.", route: str = "retrieval") -> Answer:
    return Answer(
        text=text_,
        route=route,  # type: ignore[arg-type]
        confidence=0.9,
        reason="topic shipping_times",
        sources=[Source(title="Shipping", path="knowledge/shipping.md", heading="Times")],
        latency_ms=12.0,
    )


def test_concurrent_writers_lose_no_turns(tmp_path: Path) -> None:
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(50):
                ctx = AskContext(channel="slack", user=f"U{n}", conversation_key=f"C1:{n}")
                store.log_turn(f"question {n}-{i}", sample_answer(), ctx)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count_turns() == 400
    with store.engine.connect() as conn:
        questions = {row[0] for row in conn.execute(text("SELECT question FROM turns"))}
        conversations = conn.execute(text("SELECT count(*) FROM conversations")).scalar_one()
    assert len(questions) == 400
    assert conversations == 8


def test_turn_keeps_sources_and_route(tmp_path: Path) -> None:
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    turn_id = store.log_turn("How long?", sample_answer(), AskContext(channel="cli", user="me"))
    turn = store.get_turn(turn_id)
    assert turn is not None
    assert turn.route == "retrieval"
    assert turn.sources[0]["path"] == "knowledge/shipping.md"
    assert turn.route_reason == "topic shipping_times"


def test_changed_vote_updates_instead_of_adding(tmp_path: Path) -> None:
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    turn_id = store.log_turn("q", sample_answer(), AskContext())
    store.record_feedback(turn_id, "U1", 1)
    store.record_feedback(turn_id, "U1", -1)
    store.record_feedback(turn_id, "U2", 1)
    assert store.feedback_for(turn_id) == {"U1": -1, "U2": 1}
    assert store.vote_totals() == {"up": 1, "down": 1}


def test_event_is_claimed_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    first, second = ConversationStore.open(url), ConversationStore.open(url)  # two replicas
    assert first.claim_event("Ev1") is True
    assert second.claim_event("Ev1") is False
    assert second.claim_event("Ev2") is True


def test_old_event_ids_are_pruned_and_recent_ones_kept(tmp_path: Path, monkeypatch) -> None:
    from datetime import UTC, datetime, timedelta

    import bot.conversation_log.store as store_module

    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    now = datetime.now(UTC)
    monkeypatch.setattr(store_module, "utcnow", lambda: now - timedelta(days=10))
    assert store.claim_event("Ev-old") is True
    monkeypatch.setattr(store_module, "utcnow", lambda: now)
    assert store.claim_event("Ev-new") is True
    assert store.prune_events(now - timedelta(days=7)) == 1
    assert store.claim_event("Ev-new") is False  # a retry of a recent event is still dropped
    assert store.was_claimed("Ev-old") is False


def test_latest_staff_label_wins(tmp_path: Path) -> None:
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    turn_id = store.log_turn("How often to water a Nepenthes?", sample_answer(route="domain"), AskContext())
    store.add_staff_label(turn_id, "S1", "correct")
    store.add_staff_label(turn_id, "S2", "incorrect", corrected_answer="Keep it moist.", correct_route="domain")
    labeled = store.labeled_turns()
    assert len(labeled) == 1
    assert labeled[0].verdict == "incorrect"
    assert labeled[0].corrected_answer == "Keep it moist."
    assert store.count_labels_since(None) == 2


def test_upgrade_from_first_schema_keeps_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    migrate(engine, upto="001_initial")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO conversations (id, channel, conversation_key, user_id, started_at) "
            "VALUES (1, 'slack', 'C1:1', 'U1', '2026-01-01 00:00:00')"
        ))
        conn.execute(text(
            "INSERT INTO turns (conversation_id, question, route, confidence, route_reason, answer, "
            "sources, model_version, router_version, latency_ms, channel, user_id, slack_channel, "
            "thread_ts, message_ts, created_at) VALUES (1, 'old question', 'domain', 0.8, '', 'old', "
            "'[]', '', '', 5, 'slack', 'U1', 'C1', '1.0', '2.0', '2026-01-01 00:00:00')"
        ))
    assert "fallback_reason" not in {c["name"] for c in inspect(engine).get_columns("turns")}
    engine.dispose()

    store = ConversationStore.open(url)  # opening migrates
    assert applied_migrations(store.engine) == [name for name, _ in MIGRATIONS]
    old = store.turn_by_message("C1", "2.0")
    assert old is not None and old.question == "old question" and old.fallback_reason == ""
    store.log_turn("new question", sample_answer(), AskContext())
    assert store.count_turns() == 2


def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from bot.errors import StoreError

    with pytest.raises(StoreError) as err:
        ConversationStore.open("postgresql+psycopg://bot@127.0.0.1:1/nowhere")
    assert "database.url" in str(err.value)
