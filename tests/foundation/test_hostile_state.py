"""Damaged or read-only state is named in one line at start, and a failed log write costs no answer.

The CLI runs stop at the state check, before any model loads, so they take a couple of
seconds each; the config points at model paths that do not exist to prove nothing loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.errors import StoreError
from bot.interfaces import AskContext
from bot.pipeline import Pipeline
from tests.foundation.hostile import error_lines, make_corrupt_log, output_of, read_only_paths, run_cli
from tests.foundation.test_pipeline import CannedAnswerer, FixedRouter


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.toml"
    (tmp_path / "knowledge").mkdir(exist_ok=True)
    cfg.write_text(
        f"""
[app]
state_dir = "{tmp_path / 'var'}"
[models]
base_llm_path = "{tmp_path / 'no-model-here'}"
embedder_path = "{tmp_path / 'no-embedder-here'}"
[knowledge]
dir = "{tmp_path / 'knowledge'}"
watch = false
""",
        encoding="utf-8",
    )
    return cfg


COMMANDS = {
    "ask": ["ask", "How long does shipping to Canada take?"],
    "chat": ["chat"],
    "serve": ["serve"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_corrupt_log_is_refused_at_start_in_one_line_and_left_untouched(tmp_path: Path, command: str) -> None:
    cfg = write_config(tmp_path)
    log_file = tmp_path / "var" / "supportbot.db"
    log_file.parent.mkdir(parents=True)
    damaged = make_corrupt_log(log_file)

    result = run_cli("--config", str(cfg), *COMMANDS[command], cwd=tmp_path, stdin=b"hello\nexit\n")

    assert result.returncode == 2
    assert "Traceback" not in output_of(result)
    errors = [line for line in error_lines(result) if line.startswith("error:")]
    assert len(errors) == 1, error_lines(result)
    assert errors[0].startswith(f"error: {log_file} is corrupt (quick_check: ")
    assert "restore it from a backup or move it aside" in errors[0]
    assert hashlib.sha256(log_file.read_bytes()).digest() == hashlib.sha256(damaged).digest()


def test_corrupt_log_is_never_migrated_by_any_opener(tmp_path: Path) -> None:
    log_file = tmp_path / "log.db"
    damaged = make_corrupt_log(log_file)
    with pytest.raises(StoreError, match="is corrupt"):
        ConversationStore.open(f"sqlite:///{log_file}")
    assert log_file.read_bytes() == damaged


def test_read_only_state_dir_is_named_instead_of_blaming_the_database_url(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    state = tmp_path / "var"
    state.mkdir()
    with read_only_paths() as read_only:
        read_only(state)
        result = run_cli("--config", str(cfg), "ask", "Where is my order?", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in output_of(result)
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {state} is not writable (")
    assert "app.state_dir" in lines[0] and "database.url" not in lines[0]


@pytest.mark.parametrize("command", [["ask", "Where is my order?"], ["index"]])
def test_read_only_chroma_folder_is_named_instead_of_a_chromadb_error(tmp_path: Path, command: list[str]) -> None:
    cfg = write_config(tmp_path)
    chroma = tmp_path / "var" / "chroma"
    chroma.mkdir(parents=True)
    (chroma / "chroma.sqlite3").write_bytes(b"")
    with read_only_paths() as read_only:
        read_only(chroma)
        result = run_cli("--config", str(cfg), *command, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in output_of(result)
    assert "InternalError" not in output_of(result)
    lines = error_lines(result)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"error: {chroma} is not writable (")
    assert "knowledge.chroma_url" in lines[0]


def test_read_only_file_inside_chroma_folder_is_named(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    index_file = tmp_path / "var" / "chroma" / "chroma.sqlite3"
    index_file.parent.mkdir(parents=True)
    index_file.write_bytes(b"")
    with read_only_paths() as read_only:
        read_only(index_file)
        result = run_cli("--config", str(cfg), "index", cwd=tmp_path)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: {index_file} is not writable; the knowledge index (embedded Chroma) must write it: make "
        f"{index_file.parent} writable for this user (chown -R / chmod -R u+w), set app.state_dir to a "
        "writable folder, or use a Chroma server (knowledge.chroma_url)"
    ]


def test_read_only_router_registry_is_named(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    routers = tmp_path / "var" / "routers"
    routers.mkdir(parents=True)
    with read_only_paths() as read_only:
        read_only(routers)
        result = run_cli("--config", str(cfg), "ask", "Where is my order?", cwd=tmp_path)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith(f"error: {routers} is not writable ("), lines
    assert "router registry" in lines[0]


def test_store_open_names_an_unwritable_folder_not_the_url(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    with read_only_paths() as read_only, pytest.raises(StoreError) as err:
        read_only(folder)
        ConversationStore.open(f"sqlite:///{folder / 'supportbot.db'}")
    message = str(err.value)
    assert message.startswith(f"{folder} is not writable (")
    assert "database.url" not in message and "\n" not in message


# --- a failed write of a turn at run time ------------------------------------------------------


def build_pipeline(settings: Settings) -> Pipeline:
    return Pipeline.from_settings(
        settings,
        ConversationStore.open(settings.database_url),
        FixedRouter("retrieval", 0.9),
        {"retrieval": CannedAnswerer("retrieval", "Returns within 30 days."), "escalate": EscalationAnswerer(settings.app.company_name)},
    )


def failures_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "bot.pipeline" and "log write failed" in r.getMessage()]


def assert_answers_survive_a_failing_log(pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        answer = pipeline.answer("How do I return a pot?", AskContext(user="U1"))
        assert answer.text == "Returns within 30 days." and answer.route == "retrieval"
        assert answer.turn_id is None
    failed = failures_logged(caplog)
    assert len(failed) == 3
    assert failed[0].exc_info  # the first one explains itself once ...
    assert not any(r.exc_info for r in failed[1:])  # ... then one line per failed turn
    assert all("\n" not in r.getMessage() for r in failed)
    assert "OperationalError" in failed[0].getMessage()


def test_answer_is_shown_when_the_log_file_turns_read_only_after_start(
    settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_factory()
    pipeline = build_pipeline(settings)
    assert pipeline.answer("How do I return a pot?").turn_id is not None
    wal = settings.state_dir / "supportbot.db-wal"
    assert wal.is_file()
    if os.geteuid() != 0:
        pytest.skip("an open file stays writable after chmod; only root can make it immutable (chattr +i)")
    with read_only_paths() as read_only:
        read_only(wal)
        with caplog.at_level(logging.INFO, logger="bot.pipeline"):
            assert_answers_survive_a_failing_log(pipeline, caplog)
    with caplog.at_level(logging.INFO, logger="bot.pipeline"):
        assert pipeline.answer("How do I return a pot?").turn_id is not None
    assert any("writes work again after 3 failed" in r.getMessage() for r in caplog.records)
    pipeline.store.close()


def test_answer_is_shown_when_the_disk_fills_up_after_start(
    settings_factory: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_factory()
    pipeline = build_pipeline(settings)
    assert pipeline.answer("How do I return a pot?").turn_id is not None
    wal_size = (settings.state_dir / "supportbot.db-wal").stat().st_size
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (wal_size, limits[1]))  # no file of ours may grow
    try:
        with caplog.at_level(logging.INFO, logger="bot.pipeline"):
            assert_answers_survive_a_failing_log(pipeline, caplog)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert pipeline.answer("How do I return a pot?").turn_id is not None
    pipeline.store.close()
