"""The SQLite log file, checked before anything writes to it.

A file with a valid header but damaged pages opens fine and fails only on the first INSERT,
after the customer's answer was computed; migrating it could make the damage worse. So
`ConversationStore.open` first runs `PRAGMA quick_check` on a read-only connection, and a
damaged file is refused with its path and what to do, untouched. The same module explains a
file or folder that cannot be written, instead of SQLite's "unable to open database file".
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.errors import StoreError

MEMORY_DATABASES = ("", ":memory:")
DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")  # what sqlite3 says of a damaged file or one that is no database


def sqlite_file_path(url: str) -> Path | None:
    """The log's file when `url` is a SQLite file URL; None for Postgres, in-memory or unparsable URLs."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # e.g. a port that is not a number: ConversationStore.open says so
        return None
    if parsed.get_backend_name() != "sqlite" or (parsed.database or "") in MEMORY_DATABASES:
        return None
    database = parsed.database or ""
    if database.startswith("file:"):  # URI filename: sqlite:///file:path?mode=...&uri=true
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


def check_sqlite_log(path: Path) -> None:
    """Refuse a log file that is damaged, unreadable or not a database; never writes to it.

    A missing or empty file is fine: it becomes a new log.
    """
    if not path.exists():
        return
    if not path.is_file():
        raise StoreError(f"{path} is not a file; the conversation log must be a SQLite file: move it "
                         "aside or point app.state_dir / database.url elsewhere")
    try:
        if path.stat().st_size == 0:
            return
        problem = _quick_check(path)
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorname", "") not in DAMAGED:  # locked, no permission, no folder
            raise StoreError(
                explain_unwritable_log(path, str(exc))
                or f"{path} cannot be opened ({exc}); check that this user may read and write it and its folder"
            ) from None
        problem = str(exc)
    except OSError as exc:
        raise StoreError(f"{path} cannot be read ({exc.strerror or exc}); give this user read and write "
                         "access to it and its folder") from None
    if problem is not None:
        raise StoreError(
            f"{path} is corrupt (quick_check: {problem}); restore it from a backup or move it aside to "
            "start a new log — it was not modified"
        )


def explain_unwritable_log(path: Path, reason: str) -> str | None:
    """A one-line StoreError message when the log's folder or file cannot be written, else None."""
    folder = path.parent
    if not folder.is_dir():
        return (f"{folder} does not exist and cannot be created ({reason}); the conversation log {path.name} "
                "goes there: create it, or set app.state_dir to a writable folder")
    problem = writable_problem(folder)
    if problem:
        return (f"{folder} is not writable ({problem}); the conversation log {path.name} needs it: make it "
                "writable for this user (chown/chmod) or set app.state_dir to a writable folder")
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        member = folder / name
        if member.exists() and not os.access(member, os.R_OK | os.W_OK):
            return (f"{member} is not writable; the conversation log needs to write it: make it writable "
                    "for this user (chown/chmod) or set app.state_dir to a writable folder")
    return None


def writable_problem(folder: Path) -> str | None:
    """Why a file cannot be created in `folder`, or None. A real probe, because permission bits
    do not tell the whole story (read-only mounts, immutable folders, root)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".supportbot-write-check-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(probe)
    return None


def _quick_check(path: Path) -> str | None:
    """The first problem `PRAGMA quick_check` reports, or None when the file is sound."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    finally:
        conn.close()
    lines = [line.strip() for (row,) in rows for line in str(row).splitlines()]
    problems = [line for line in lines if line and line != "ok" and not line.startswith("***")]
    if not problems:
        return None
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    return problems[0] + more

