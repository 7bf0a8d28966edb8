"""What is on disk in the knowledge folder: which files count, and reading them safely.

Ops save files with editors that write in several steps; reading a file while it is being
written would index half a policy. We read, then compare the file's size and mtime before and
after, and retry briefly; a file that keeps changing is left for the next sync.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from bot.indexing.documents import is_supported

log = logging.getLogger(__name__)

STABLE_AFTER_NS = 2_000_000_000  # a file unchanged this long before we read it may skip re-hashing


def scan_folder(root: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """Indexable files and files of a type we cannot read, as (relative POSIX path, path), sorted.

    Hidden files and editor swap/backup files are left out of both: they are not documents.
    """
    files, unsupported = [], []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith((".", "#")) for part in rel.parts) or path.name.endswith("~"):
            continue
        if not path.is_file():
            continue
        (files if is_supported(path.name) else unsupported).append((rel.as_posix(), path))
    return files, unsupported


def stat_unchanged(entry: dict[str, Any], stat: Any) -> bool:
    return (
        entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
        and stat.st_mtime_ns < int(entry.get("checked_ns", 0)) - STABLE_AFTER_NS
    )


def read_stable(path: Path, attempts: int = 3) -> tuple[bytes, Any] | None:
    """The file's bytes and a stat taken around the read, or None while it is being written.

    OSError (deleted meanwhile, no permission) propagates: the caller reports it.
    """
    for attempt in range(attempts):
        before = path.stat()
        data = path.read_bytes()
        after = path.stat()
        if (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns) == (len(data), after.st_mtime_ns):
            return data, after
        time.sleep(0.05 * (attempt + 1))  # back off while a writer finishes
    return None


def mtime_date(mtime: float) -> str:
    return dt.datetime.fromtimestamp(mtime, tz=dt.UTC).date().isoformat()


def progress_bar(enabled: bool, total: int) -> tuple[Any, Any] | None:
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("embedding chunks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )
    task = bar.add_task("embed", total=total)
    bar.start()
    return bar, task
