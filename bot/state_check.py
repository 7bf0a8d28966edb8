"""Runtime state checked at start, before any model loads: one clear line instead of a late traceback.

Without these checks a read-only state dir surfaced as a message blaming `database.url`, a
read-only `chroma/` folder as chromadb's InternalError, and a damaged log only after `ask` had
computed its answer. Every command that opens state calls `check_state_at_start` first; the
conversation log's own check (SQLite `PRAGMA quick_check`, read-only) runs in
`ConversationStore.open`, so no code path can migrate or write a damaged file.

The checks only probe (a temporary file created and removed, `os.access` on what exists);
they create nothing but the state dir itself, which every command needs anyway.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bot.config import Settings
from bot.conversation_log.sqlite_file import explain_unwritable_log, sqlite_file_path, writable_problem
from bot.errors import StateError, StoreError
from bot.registry import ADAPTERS_DIR, ROUTERS_DIR

log = logging.getLogger(__name__)

FIX_STATE_DIR = "make it writable for this user (chown -R / chmod -R u+w) or set app.state_dir to a writable folder"
CHROMA_SERVER = "or use a Chroma server (knowledge.chroma_url)"


def registry_folders(settings: Settings) -> dict[str, Path]:
    """The artifact registries under the state dir (`bot.registry`)."""
    return {"adapter registry": settings.state_dir / ADAPTERS_DIR, "router registry": settings.state_dir / ROUTERS_DIR}


def embedded_chroma_folder(settings: Settings) -> Path | None:
    """Where embedded Chroma keeps the index (`bot.indexing.chroma_store`); None with a Chroma server."""
    return None if settings.knowledge.chroma_url.strip() else settings.state_dir / "chroma"


def check_state_at_start(
    settings: Settings,
    *,
    conversation_log: bool = True,
    knowledge_index: bool = True,
    registries: bool = True,
) -> None:
    """Raise `StateError`/`StoreError` naming the first unusable path and its fix; log nothing on success."""
    _ensure_state_dir(settings.state_dir)
    if conversation_log:
        _check_log_location(settings)
    if knowledge_index:
        chroma = embedded_chroma_folder(settings)
        if chroma is not None:
            _check_writable_tree(chroma, "the knowledge index (embedded Chroma)", CHROMA_SERVER)
        _check_writable_folder(settings.state_dir / "knowledge", "the knowledge index manifest")
    if registries:
        for what, folder in registry_folders(settings).items():
            _check_writable_folder(folder, f"the {what}")
            versions = folder / "versions"
            if versions.is_dir():
                _check_writable_folder(versions, f"the {what}")
    log.debug("state under %s is usable", settings.state_dir)


def _ensure_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(
            f"{state_dir} cannot be created ({exc.strerror or exc}); create it, or set app.state_dir to a "
            "writable folder"
        ) from None
    if not state_dir.is_dir():
        raise StateError(f"{state_dir} is not a folder; app.state_dir must name a folder (move the file aside)")
    problem = writable_problem(state_dir)
    if problem:
        raise StateError(f"{state_dir} is not writable ({problem}); the bot keeps its state there: {FIX_STATE_DIR}")


def _check_log_location(settings: Settings) -> None:
    """The SQLite log's folder and files must be writable; a Postgres log is checked when it opens."""
    path = sqlite_file_path(settings.database_url)
    if path is None:
        return
    if not path.parent.is_dir():
        _check_writable_folder(path.parent, "the conversation log")
        return
    problem = explain_unwritable_log(path, "")
    if problem:
        raise StoreError(problem)


def _check_writable_folder(folder: Path, what: str, alternative: str = "") -> None:
    """`folder` (or, while it does not exist, the folder it would be created in) accepts new files."""
    target = _nearest_existing(folder)
    if not target.is_dir():
        raise StateError(f"{target} is not a folder, but {what} needs {folder} there: move it aside")
    problem = writable_problem(target)
    if problem:
        fix = FIX_STATE_DIR + (f", {alternative}" if alternative else "")
        raise StateError(f"{target} is not writable ({problem}); {what} is kept there: {fix}")


def _check_writable_tree(folder: Path, what: str, alternative: str) -> None:
    """Like `_check_writable_folder`, and every file and folder already inside must be writable."""
    _check_writable_folder(folder, what, alternative)
    if not folder.is_dir():
        return
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(root) / name
            if not path.is_symlink() and not os.access(path, os.W_OK):
                raise StateError(
                    f"{path} is not writable; {what} must write it: make {folder} writable for this user "
                    f"(chown -R / chmod -R u+w), set app.state_dir to a writable folder, {alternative}"
                )


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path
