"""Replicas that start together migrate one database once, and the ORM models match what the
migrations build (a column added to a model but not to a migration would fail only in production,
on the first write)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect

from bot.conversation_log.migrations import MIGRATIONS, applied_migrations, migrate
from bot.conversation_log.schema import Base
from bot.conversation_log.store import ConversationStore, make_engine
from tests.servers.postgres import postgres_server

ALL = [name for name, _ in MIGRATIONS]
PROCESSES = 4


def _migrate_after(barrier: Any, url: str, results: Any) -> None:
    engine = make_engine(url)
    barrier.wait(timeout=60)  # every process reaches the database at the same moment
    try:
        results.put(("ok", migrate(engine)))
    except Exception as exc:  # reported to the test, which names it
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        engine.dispose()


def migrate_at_once(url: str) -> list[tuple[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    procs = [ctx.Process(target=_migrate_after, args=(barrier, url, results)) for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    return outcomes


def assert_migrated_once(url: str, outcomes: list[tuple[str, Any]]) -> None:
    assert [kind for kind, _ in outcomes] == ["ok"] * PROCESSES, outcomes
    applied_by_someone = sorted(name for _, ran in outcomes for name in ran)
    assert applied_by_someone == sorted(ALL)  # each migration ran in exactly one process
    engine = make_engine(url)
    try:
        assert sorted(applied_migrations(engine)) == sorted(ALL)
    finally:
        engine.dispose()


def orm_matches_migrated_schema(url: str) -> None:
    engine = make_engine(url)
    try:
        migrate(engine)
        found = inspect(engine)
        assert set(found.get_table_names()) == set(Base.metadata.tables) | {"schema_migrations"}
        for name, table in Base.metadata.tables.items():
            migrated = {c["name"]: c for c in found.get_columns(name)}
            assert set(migrated) == {c.name for c in table.columns}, name
            for column in table.columns:
                if not column.primary_key:
                    assert migrated[column.name]["nullable"] == column.nullable, f"{name}.{column.name}"
            indexed = {tuple(ix["column_names"]) for ix in found.get_indexes(name)}
            for column in table.columns:
                if column.index:
                    assert (column.name,) in indexed, f"{name}.{column.name} is indexed in the model only"
    finally:
        engine.dispose()


def test_replicas_starting_together_migrate_a_sqlite_log_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    assert_migrated_once(url, migrate_at_once(url))


def test_orm_models_match_the_migrated_sqlite_schema(tmp_path: Path) -> None:
    orm_matches_migrated_schema(f"sqlite:///{tmp_path / 'schema.db'}")


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.mark.slow
def test_replicas_starting_together_migrate_a_postgres_log_once(pg_url: str) -> None:
    assert_migrated_once(pg_url, migrate_at_once(pg_url))
    orm_matches_migrated_schema(pg_url)


def test_a_replica_waits_for_one_still_writing_through_the_rollback_journal(tmp_path: Path) -> None:
    """On a fresh log the first writer may still be in rollback-journal mode when the next
    replica opens it; SQLite refuses the switch to WAL at once there (no busy wait), which is
    how one of four replicas failed to start in CI."""
    path = tmp_path / "log.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE earlier (x)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO earlier VALUES (1)")
    release = threading.Timer(0.5, lambda: writer.execute("COMMIT"))
    release.start()
    try:
        store = ConversationStore.open(f"sqlite:///{path}")
    finally:
        release.join()
        writer.close()
    try:
        assert sorted(applied_migrations(store.engine)) == sorted(ALL)
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.engine.dispose()
