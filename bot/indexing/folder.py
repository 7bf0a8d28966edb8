"""What is on disk in the knowledge folder: which files count, and reading them safely.

Symbolic links are followed only within the folder: a link pointing out of it, a loop or a
broken link is refused with a warning, never indexed silently or skipped silently.

Ops save files with editors that write in several steps; reading a file while it is being
written would index half a policy. We read, then compare the file's size and mtime before and
after, and retry briefly; a file that keeps changing is left for the next sync.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import time
from pathlib import Path
from typing import Any

from bot.indexing.documents import is_supported

log = logging.getLogger(__name__)

STABLE_AFTER_NS = 2_000_000_000  # a file unchanged this long before we read it may skip re-hashing


def scan_folder(
    root: Path,
) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]], list[tuple[str, Path, str]]]:
    """Indexable files, files of a type we cannot read, and symbolic links we refuse, sorted.

    Files come as (relative POSIX path, path to read); refused links as (relative path, link,
    reason). Hidden files and editor swap/backup files are left out of all three: they are not
    documents. A link is followed only to a file inside the knowledge folder, never out of it
    (a link to /etc/hostname would otherwise be quoted to customers); folder links are not
    followed at all (what they point to inside the folder is indexed where it lives).
    """
    real_root = root.resolve()
    files: list[tuple[str, Path]] = []
    unsupported: list[tuple[str, Path]] = []
    refused: list[tuple[str, Path, str]] = []
    for folder, dirs, names in os.walk(root):  # never descends into folder links
        dirs.sort()
        for name in sorted([*names, *(d for d in dirs if (Path(folder) / d).is_symlink())]):
            path = Path(folder) / name
            rel = path.relative_to(root)
            if any(part.startswith((".", "#")) for part in rel.parts) or name.endswith("~"):
                continue
            target = path
            if path.is_symlink():
                target, reason = _follow_link(path, real_root)
                if reason:
                    refused.append((rel.as_posix(), path, reason))
                    continue
                if target.is_dir():
                    if path.parent.resolve().is_relative_to(target):
                        refused.append((rel.as_posix(), path, f"symbolic link loop (it points back to "
                                        f"{target}, a folder it is in); remove it"))
                    else:
                        log.debug("not following folder link %s -> %s (indexed where it lives)", rel, target)
                    continue
            if not target.is_file():
                continue
            (files if is_supported(name) else unsupported).append((rel.as_posix(), target))
        dirs[:] = [d for d in dirs if not d.startswith((".", "#")) and not (Path(folder) / d).is_symlink()]
    return sorted(files), sorted(unsupported), sorted(refused)


def _follow_link(link: Path, real_root: Path) -> tuple[Path, str]:
    """The link's final target inside the knowledge folder, or a reason it is not followed."""
    try:
        target = Path(os.path.realpath(link, strict=True))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return link, "symbolic link loop (following it never ends); remove it or point it at a file"
        if exc.errno != errno.ENOENT:
            return link, f"symbolic link that cannot be followed ({exc.strerror}); fix its target's permissions"
        try:
            pointed = os.readlink(link)
        except OSError:
            pointed = "?"
        return link, f"broken symbolic link (its target {pointed} does not exist); remove it or fix the target"
    if not target.is_relative_to(real_root):
        return link, (f"symbolic link to {target}, outside the knowledge folder: not indexed (copy the "
                      "document into the folder instead)")
    return target, ""


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
