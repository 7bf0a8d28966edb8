"""Helpers for testing as a careless or hostile user would: damaged files, read-only paths, raw bytes.

A read-only path must stop the process under test even when the tests run as root (CI
containers do), where permission bits do not: there the path is made immutable with
`chattr +i`, and the test is skipped where neither works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext

REPO = Path(__file__).resolve().parents[2]
SQLITE_PAGE = 4096


def run_cli(
    *args: str | bytes, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`supportbot ARGS` in a fresh process; bytes arguments and input reach it unchanged."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SUPPORTBOT_"))}
    clean.update(env or {})
    clean["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli.main", *args],
        cwd=cwd, input=stdin, capture_output=True, env=clean, timeout=300,
    )


def make_corrupt_log(path: Path, turns: int = 150) -> bytes:
    """A real conversation log whose header is intact but whose middle pages are overwritten."""
    store = ConversationStore.open(f"sqlite:///{path}")
    answer = Answer(text="Ships Monday to Wednesday. " * 10, route="retrieval", confidence=0.8, reason="topic")
    for i in range(turns):
        store.log_turn(f"question {i}: " + "how long does shipping take? " * 8, answer, AskContext(user=f"U{i}"))
    store.close()
    pages = path.stat().st_size // SQLITE_PAGE
    assert pages > 10, "the log is too small to damage its middle"
    with path.open("r+b") as f:
        for page in range(2, pages - 1, 2):
            f.seek(page * SQLITE_PAGE + 100)
            f.write(b"\xde\xad\xbe\xef" * 200)
    return path.read_bytes()


@contextmanager
def read_only_paths() -> Iterator[Callable[[Path], None]]:
    """Yield `make(path)`, which makes a file or folder unwritable until the block ends."""
    undo: list[Callable[[], object]] = []

    def make(path: Path) -> None:
        if os.geteuid() != 0:
            mode = path.stat().st_mode
            path.chmod(mode & ~0o222)
            undo.append(lambda: path.chmod(mode))
            return
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("running as root where chattr +i is refused: cannot make a path read-only here")
        undo.append(lambda: subprocess.run(["chattr", "-i", str(path)], check=True))

    try:
        yield make
    finally:
        for step in reversed(undo):
            step()


def output_of(result: subprocess.CompletedProcess[bytes]) -> str:
    return (result.stdout + result.stderr).decode("utf-8", "replace")


def error_lines(result: subprocess.CompletedProcess[bytes]) -> list[str]:
    return [line for line in result.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
