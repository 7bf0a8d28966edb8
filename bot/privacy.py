"""Retention and erasure: how long customer conversations are kept, and forgetting one person.

The log holds every question with the asker's Slack user id or Rasa sender id; staff labels turn
some of them into expert-memory entries, training examples and router examples. Retention
(`privacy.retention_days`) deletes turns older than that, with their votes and labels, in an
hourly job off the answer path; training exports already written keep their (redacted) examples
until the run folder is deleted. Erasure (`supportbot privacy forget`) removes one person's
turns, votes and labels from the log, the expert-memory entries built from them, and every copy
of their words in the state directory: training exports (the rows go), training and evaluation
reports and saved routers (the text becomes "[erased]"). It names the adapter versions trained on
their data, so ops can retrain without it. Nothing here logs what the person wrote.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.atomic import atomic_write_text
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.conversation_log.schema import utcnow
from bot.conversation_log.store import Removed

log = logging.getLogger(__name__)

ERASED = "[erased]"
RETENTION_INTERVAL_S = 3600.0
TEXT_SUFFIXES = {".jsonl", ".json", ".md", ".txt", ".csv", ".yaml", ".yml"}
SKIP_DIRS = {"chroma", "models", "model-cache", "hf", "checkpoints"}  # binary or vector stores
MAX_SCRUB_BYTES = 200 * 2**20
CHANNELS = {"slack": "Slack user id", "rasa": "Rasa sender id"}


# --- retention ------------------------------------------------------------------------------


def apply_retention(settings: Settings, store: ConversationStore, now: datetime | None = None) -> Removed:
    """Delete what is older than `privacy.retention_days` (0 keeps everything)."""
    days = settings.privacy.retention_days
    if days <= 0:
        return Removed()
    cutoff = (now or utcnow()) - timedelta(days=days)
    removed = store.delete_turns_before(cutoff)
    if removed.turns or removed.events:
        log.info("retention: deleted %d turn(s), %d vote(s), %d label(s), %d conversation(s), %d event id(s) "
                 "older than %d days", removed.turns, removed.feedback, removed.labels, removed.conversations,
                 removed.events, days)
    return removed


class RetentionJob:
    """Runs `apply_retention` every hour on a background thread (every replica may; deletes are
    idempotent). Its failures are logged and retried at the next run; answering never waits on it."""

    def __init__(self, settings: Settings, store: ConversationStore, interval_s: float = RETENTION_INTERVAL_S) -> None:
        self.settings = settings
        self.store = store
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RetentionJob:
        if self.settings.privacy.retention_days > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                apply_retention(self.settings, self.store)
            except Exception as exc:  # the database away for a moment: try again at the next run
                log.warning("retention run failed (%s: %s); trying again in %.0f s", type(exc).__name__, exc,
                            self.interval_s)
            if self._stop.wait(self.interval_s):
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


# --- erasure --------------------------------------------------------------------------------


@dataclass
class ForgetReport:
    channel: str
    user_id: str
    turns: int = 0
    feedback: int = 0
    labels: int = 0
    conversations: int = 0
    memory_entries: int = 0
    export_rows: int = 0
    files_changed: list[str] = field(default_factory=list)
    adapters_trained_on_them: list[str] = field(default_factory=list)
    routers_trained_on_them: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_person(store: ConversationStore, channel: str, user_id: str) -> dict[str, Any]:
    """What the bot holds about one person, as plain data (their turns, votes, and labels on their turns)."""
    turns = store.turns_of_user(channel, user_id)
    labels = store.labels_on([t.id for t in turns])
    return {
        "channel": channel,
        "user_id": user_id,
        "exported_at": utcnow().isoformat(),
        "turns": [
            {"id": t.id, "asked_at": t.created_at.isoformat(), "question": t.question,
             "read_as": t.standalone_question, "answer": t.answer, "route": t.route,
             "slack_channel": t.slack_channel, "thread_ts": t.thread_ts}
            for t in turns
        ],
        "votes": [{"turn_id": v.turn_id, "vote": v.vote, "at": v.updated_at.isoformat()}
                  for v in store.votes_of_user(user_id)],
        "staff_labels_on_their_turns": [
            {"turn_id": lab.turn_id, "verdict": lab.verdict, "corrected_answer": lab.corrected_answer,
             "at": lab.created_at.isoformat()} for lab in labels
        ],
    }


def forget_person(settings: Settings, store: ConversationStore, channel: str, user_id: str,
                  memory: Any = None) -> ForgetReport:
    """Erase one person (see the module docstring); `memory`, when given, is synced at once."""
    from bot.memory.entries import desired_entries

    report = ForgetReport(channel, user_id)
    before = set(desired_entries(settings, store)) if memory is not None else set()
    removed = store.forget_user(channel, user_id)
    report.turns, report.feedback, report.labels, report.conversations = (
        removed.turns, removed.feedback, removed.labels, removed.conversations)
    texts = {t.strip() for t in removed.texts if len(t.strip()) >= 3}
    if memory is not None:
        report.memory_entries = len(before - set(desired_entries(settings, store)))
        if report.memory_entries:
            memory.rebuild()  # Chroma keeps deleted documents until the collection is dropped
        else:
            memory.refresh(force=True)
    if texts:
        rows, files, hashes = scrub_state_dir(settings.state_dir, texts, set(removed.turn_ids))
        report.export_rows, report.files_changed = rows, sorted(files)
        report.adapters_trained_on_them = adapters_trained_on(settings, hashes)
        # routers/versions/v0003/meta.json: the version is the folder right under versions/
        report.routers_trained_on_them = sorted(
            {parts[parts.index("versions") + 1] for f in files if f.startswith("routers/")
             and "versions" in (parts := Path(f).parts) and parts.index("versions") + 1 < len(parts) - 1})
    store.compact()
    compact_embedded_chroma(settings)
    log.info("forgot %s %s: %d turn(s), %d vote(s), %d label(s), %d training-export row(s), %d file(s) changed; "
             "adapters trained on their data: %s", CHANNELS.get(channel, channel), _masked(user_id), report.turns,
             report.feedback, report.labels, report.export_rows, len(report.files_changed),
             ", ".join(report.adapters_trained_on_them) or "none")
    return report


def _masked(user_id: str) -> str:
    return user_id[:3] + "…" if len(user_id) > 3 else "…"


def _text_files(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]) or path.is_symlink() or not path.is_file():
            continue
        if path.suffix.lower() in TEXT_SUFFIXES and path.stat().st_size <= MAX_SCRUB_BYTES:
            yield path


def _contains(value: Any, texts: set[str]) -> bool:
    if isinstance(value, str):
        return any(t in value for t in texts)
    if isinstance(value, dict):
        return any(_contains(v, texts) for v in value.values())
    if isinstance(value, list):
        return any(_contains(v, texts) for v in value)
    return False


def _erase(value: Any, texts: set[str]) -> Any:
    if isinstance(value, str):
        for text in texts:
            value = value.replace(text, ERASED)
        return value
    if isinstance(value, dict):
        return {k: _erase(v, texts) for k, v in value.items()}
    if isinstance(value, list):
        return [_erase(v, texts) for v in value]
    return value


def scrub_state_dir(state_dir: Path, texts: set[str], turn_ids: set[int]) -> tuple[int, set[str], set[str]]:
    """Remove a person's words from the text files of the state directory.

    Training-export rows (`*.jsonl` with `messages`) that hold them, or name one of their turns,
    are dropped; any other text has them replaced by "[erased]". Returns the rows dropped, the
    files changed (relative paths) and the data hashes of the exports that had rows dropped."""
    rows_dropped = 0
    changed: set[str] = set()
    hashes: set[str] = set()
    for path in _text_files(state_dir):
        try:
            original = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not any(t in original for t in texts) and not (turn_ids and '"turn_id"' in original):
            continue
        if path.suffix == ".jsonl":
            kept, dropped = _scrub_jsonl(original, texts, turn_ids)
            if dropped:
                rows_dropped += dropped
                report = path.parent / "report.json"
                if report.is_file():
                    try:
                        hashes.add(str(json.loads(report.read_text(encoding="utf-8")).get("data_hash", "")))
                    except (ValueError, OSError):
                        pass
            new = kept
        elif path.suffix == ".json":
            try:
                new = json.dumps(_erase(json.loads(original), texts), ensure_ascii=False, indent=2) + "\n"
            except ValueError:
                new = _erase(original, texts)
        else:
            new = _erase(original, texts)
        if new != original:
            atomic_write_text(path, new)
            changed.add(path.relative_to(state_dir).as_posix())
    hashes.discard("")
    return rows_dropped, changed, hashes


def _scrub_jsonl(text: str, texts: set[str], turn_ids: set[int]) -> tuple[str, int]:
    kept: list[str] = []
    dropped = 0
    for line in text.splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            row = None
        if isinstance(row, dict) and (row.get("turn_id") in turn_ids or _contains(row, texts)):
            dropped += 1
            continue
        kept.append(_erase(line, texts) if row is None else line)
    return "".join(f"{line}\n" for line in kept), dropped


def adapters_trained_on(settings: Settings, data_hashes: Iterable[str]) -> list[str]:
    """Adapter versions whose training data had one of these hashes."""
    wanted = set(data_hashes)
    if not wanted:
        return []
    from bot.registry import adapter_registry

    registry = adapter_registry(settings)
    return sorted(info.version for info in registry.list() if str(info.metadata.get("data_hash", "")) in wanted)


def compact_embedded_chroma(settings: Settings) -> None:
    """Embedded Chroma keeps deleted documents in its SQLite file (full-text index, free pages)
    until it is compacted, and its HNSW files can hold freed copies of them in unused slots; the
    Chroma server (`knowledge.chroma_url`) is compacted by its operator."""
    import sqlite3

    from bot.indexing.hnsw_files import clear_unused_slots

    if settings.knowledge.chroma_url:
        return
    path = settings.state_dir / "chroma" / "chroma.sqlite3"
    if not path.is_file():
        return
    try:
        with sqlite3.connect(path, timeout=30) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "embedding_fulltext_search" in tables:
                conn.execute("INSERT INTO embedding_fulltext_search(embedding_fulltext_search) VALUES('optimize')")
            conn.commit()
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with sqlite3.connect(path, timeout=30, isolation_level=None) as conn:
            conn.execute("VACUUM")
    except sqlite3.Error as exc:
        log.warning("could not compact %s (%s); erased expert-memory text may stay in its free pages until "
                    "Chroma compacts it", path, exc)
    clear_unused_slots(path.parent)
