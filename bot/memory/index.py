"""The expert memory's index: a Chroma collection beside the knowledge base, kept in step with
the log.

A staff correction must answer the next customer within seconds, on every replica, with no
restart. Each process polls a cheap watermark of the labels table (newest id, count) and the
seed file's stamp every `memory.poll_s`; when it moves, the entries are recomputed from the
log and only the changed ones are embedded and written. With the Chroma server
(`knowledge.chroma_url`) replicas share one collection, and their writes are idempotent.

Two vectors per entry, in two collections: the question alone (verified answers and grounding
compare questions) and the question with its answer (similar answers: a customer who
describes a symptom matches the answer that names it).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.errors import NotFoundError

from bot.config import MemoryConfig
from bot.conversation_log import ConversationStore
from bot.indexing.chroma_store import ChromaCollection, ChromaLocation, open_client
from bot.memory.entries import SOURCE_PRIORITY, ExpertEntry, entries_from
from bot.memory.matching import canonical_question, content_words, named_subjects

log = logging.getLogger(__name__)

EmbedTexts = Callable[[Sequence[str]], np.ndarray]
EmbedQuery = Callable[[str], np.ndarray]
FORMAT = "expert-memory-2"  # 2: questions embedded in canonical form
ANSWERS_FORMAT = "expert-answers-1"


@dataclass(frozen=True)
class MemoryHit:
    entry: ExpertEntry
    similarity: float  # cosine between the question and the entry's question (or question + answer)


@dataclass(frozen=True)
class Lookup:
    """One question's neighbours, by the entries' questions and by their questions with answers."""

    by_question: list[MemoryHit]
    by_answer: list[MemoryHit]


def answer_document(entry: ExpertEntry) -> str:
    """What the second vector embeds: the question (canonical, as the first) and the answer."""
    return f"{canonical_question(entry.question)} {' '.join(entry.answer.split())}"


@dataclass(frozen=True)
class SyncReport:
    added: int
    updated: int
    removed: int
    total: int
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def _normalized(question: str) -> str:
    return " ".join(question.lower().split())


def _refresh_per_entry(cache: dict[str, tuple[str, frozenset[str]]], wanted: dict[str, ExpertEntry],
                       key_of: Callable[[ExpertEntry], str],
                       value_of: Callable[[ExpertEntry], frozenset[str]]) -> bool:
    """Bring a per-entry cache (entry id -> (key, value)) in step with `wanted`; True when it changed."""
    changed = False
    for entry_id in [i for i in cache if i not in wanted]:
        del cache[entry_id]
        changed = True
    for entry_id, entry in wanted.items():
        known = cache.get(entry_id)
        if known is None or known[0] != key_of(entry):
            cache[entry_id] = (key_of(entry), value_of(entry))
            changed = True
    return changed


class ExpertMemory:
    def __init__(
        self,
        config: MemoryConfig,
        store: ConversationStore,
        embed_texts: EmbedTexts,
        embed_query: EmbedQuery,
        fingerprint: str,
        *,
        chroma: ChromaLocation,
        collection: str,
        seed_file: Path,
    ) -> None:
        """Entries come from `seed_file` and the log's labels; they live next to the knowledge
        base's collection `collection`, in the same Chroma (`chroma`)."""
        self.cfg = config
        self.chroma = chroma
        self.seed_file = seed_file
        self.store = store
        self.embed_texts = embed_texts
        self.embed_query = embed_query
        self.fingerprint = f"{FORMAT}:{fingerprint}"
        self.name = f"{collection}_expert_memory"
        self.answers_name = f"{collection}_expert_answers"
        self._answers_fingerprint = f"{ANSWERS_FORMAT}:{fingerprint}"
        self._collection: ChromaCollection | None = None
        self._answers: ChromaCollection | None = None
        self._hashes: dict[str, str] = {}  # entry id -> content hash, as written to the collection
        self._answer_hashes: dict[str, str] = {}  # the same for the question + answer collection
        self.vocabulary: frozenset[str] = frozenset()  # names the entries' questions use
        self._entry_names: dict[str, tuple[str, frozenset[str]]] = {}  # entry id -> (question, its names)
        # How rare each content word is among the entries' questions and answers ("" = a word none uses).
        self.idf: dict[str, float] = {}
        self._entry_words: dict[str, tuple[str, frozenset[str]]] = {}  # entry id -> (content hash, its words)
        self._watermark: tuple[Any, ...] | None = None
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_sync_at = 0.0

    # --- keeping in step ----------------------------------------------------------------------

    def _open(self) -> ChromaCollection:
        if self._collection is None:
            client, where = open_client(self.chroma)
            self._collection = ChromaCollection(client, self.name, self.fingerprint)
            self._hashes = {
                record.chunk_id: str(record.meta.get("content_hash", "")) for record in self._collection.load_all()
            }
            self._answers = ChromaCollection(client, self.answers_name, self._answers_fingerprint)
            self._answer_hashes = {
                record.chunk_id: str(record.meta.get("content_hash", "")) for record in self._answers.load_all()
            }
            log.info("expert memory: Chroma collection %r at %s, %d entries", self.name, where, len(self._hashes))
        return self._collection

    def _drop_handles(self) -> None:
        """Forget the open collections: another process rebuilt them (`rebuild`, after an erasure),
        so the next read reopens them and reloads what they hold."""
        self._collection = self._answers = None
        self._hashes, self._answer_hashes, self._watermark = {}, {}, None

    def rebuild(self) -> SyncReport:
        """Both collections emptied and written again from the log and the seed file. Chroma keeps
        deleted documents in its write-ahead queue; only dropping the collection takes an erased
        person's words out of it (`supportbot privacy forget`)."""
        with self._sync_lock:
            self._open()
            assert self._collection is not None and self._answers is not None
            self._collection.reset()
            self._answers.reset()
            self._hashes.clear()
            self._answer_hashes.clear()
            self._entry_names.clear()
            report = self._sync()
            self._watermark = self._current_watermark()
            return report

    def _answer_collection(self) -> ChromaCollection:
        self._open()
        assert self._answers is not None
        return self._answers

    def _current_watermark(self) -> tuple[Any, ...]:
        seed = self.seed_file
        try:
            stat = seed.stat()
            seed_stamp: tuple[int, int] = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            seed_stamp = (0, 0)
        return (*self.store.label_watermark(), *seed_stamp, self.cfg.reuse_policy_corrections)

    def refresh(self, *, force: bool = False) -> SyncReport | None:
        """Sync when a label or the seed file changed since the last sync (or when forced)."""
        watermark = self._current_watermark()
        if not force and watermark == self._watermark:
            return None
        with self._sync_lock:
            if not force and watermark == self._watermark:
                return None
            report = self._sync()
            self._watermark = watermark
            return report

    def _sync(self) -> SyncReport:
        started = time.perf_counter()
        collection = self._open()
        answers = self._answer_collection()
        wanted = entries_from(self.seed_file, self.store, reuse_policy=self.cfg.reuse_policy_corrections)
        stale = [e for e in wanted.values() if self._hashes.get(e.entry_id) != e.content_hash]
        gone = [entry_id for entry_id in self._hashes if entry_id not in wanted]
        if stale:
            vectors = np.asarray(self.embed_texts([canonical_question(e.question) for e in stale]), dtype=np.float32)
            collection.add([e.entry_id for e in stale], vectors, [e.question for e in stale],
                           [e.metadata() for e in stale])
        if gone:
            collection.delete(gone)
        stale_answers = [e for e in wanted.values() if self._answer_hashes.get(e.entry_id) != e.content_hash]
        gone_answers = [entry_id for entry_id in self._answer_hashes if entry_id not in wanted]
        if stale_answers:
            vectors = np.asarray(self.embed_texts([answer_document(e) for e in stale_answers]), dtype=np.float32)
            answers.add([e.entry_id for e in stale_answers], vectors, [e.question for e in stale_answers],
                        [e.metadata() for e in stale_answers])
        if gone_answers:
            answers.delete(gone_answers)
        for entry in stale_answers:
            self._answer_hashes[entry.entry_id] = entry.content_hash
        for entry_id in gone_answers:
            self._answer_hashes.pop(entry_id, None)
        self._update_vocabulary(wanted)
        added = sum(e.entry_id not in self._hashes for e in stale)
        for entry in stale:
            self._hashes[entry.entry_id] = entry.content_hash
        for entry_id in gone:
            self._hashes.pop(entry_id, None)
        self.last_sync_at = time.time()
        report = SyncReport(added, len(stale) - added, len(gone), len(self._hashes), time.perf_counter() - started)
        if report.changed:
            log.info("expert memory synced: %d added, %d updated, %d removed, %d entries (%.2fs)",
                     report.added, report.updated, report.removed, report.total, report.seconds)
        return report

    def _update_vocabulary(self, wanted: dict[str, ExpertEntry]) -> None:
        """Names per entry, and how rare each content word is among the entries, recomputed only for
        entries that are new or changed (a poll after one label must not re-read ten thousand)."""
        if _refresh_per_entry(self._entry_names, wanted, lambda e: e.question,
                              lambda e: frozenset(named_subjects(e.question))):
            self.vocabulary = frozenset().union(*(names for _, names in self._entry_names.values()))
        if _refresh_per_entry(self._entry_words, wanted, lambda e: e.content_hash,
                              lambda e: frozenset(content_words(f"{e.question} {e.answer}"))):
            counts = Counter(word for _, words in self._entry_words.values() for word in words)
            total = len(self._entry_words)
            self.idf = {word: math.log1p(total / count) for word, count in counts.items()}
            self.idf[""] = math.log1p(total)

    def start_watching(self) -> None:
        """Poll for label changes in the background (every replica does, so all stay in step)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, name="expert-memory", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.cfg.poll_s):
            try:
                self.refresh()
            except NotFoundError:  # rebuilt by another process (an erasure): reopen at the next poll
                self._drop_handles()
            except Exception as exc:  # the log or Chroma briefly away: the next poll tries again
                log.warning("expert memory refresh failed (%s: %s)", type(exc).__name__, exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._hashes)

    def search(self, question: str, k: int = 3) -> list[MemoryHit]:
        """The k nearest entries by question, best first. Of entries asking the same question, the
        staff's (correction, then confirmed) beats the seed file's."""
        return self.lookup(question, k, k_answers=0).by_question

    def lookup(self, question: str, k: int = 3, k_answers: int = 1) -> Lookup:
        """Nearest entries by question (k) and by question with answer (k_answers), one embedding."""
        if not self._hashes or (k <= 0 and k_answers <= 0):
            return Lookup([], [])
        vector = self.embed_query(canonical_question(question))
        try:
            by_question = self._nearest(self._open(), vector, k, len(self._hashes))
            by_answer = self._nearest(self._answer_collection(), vector, k_answers, len(self._answer_hashes))
        except NotFoundError:  # rebuilt by another process: reopen once
            log.info("expert memory collections were rebuilt elsewhere; reopening them")
            self._drop_handles()
            self.refresh()
            by_question = self._nearest(self._open(), vector, k, len(self._hashes))
            by_answer = self._nearest(self._answer_collection(), vector, k_answers, len(self._answer_hashes))
        return Lookup(by_question, by_answer)

    @staticmethod
    def _nearest(collection: ChromaCollection, vector: np.ndarray, k: int, size: int) -> list[MemoryHit]:
        if k <= 0 or size <= 0:
            return []
        raw = collection.query(vector, min(size, k * 3))
        best: dict[str, MemoryHit] = {}
        for record, similarity in raw:
            entry = ExpertEntry.from_stored(record.chunk_id, record.text, record.meta)
            key = _normalized(entry.question)
            seen = best.get(key)
            if seen is None or SOURCE_PRIORITY.get(entry.source, 9) < SOURCE_PRIORITY.get(seen.entry.source, 9):
                best[key] = MemoryHit(entry, similarity if seen is None else max(similarity, seen.similarity))
        return sorted(best.values(), key=lambda hit: -hit.similarity)[:k]

    def entries(self) -> list[ExpertEntry]:
        """Every entry as stored, staff entries first."""
        collection = self._open()
        entries = [ExpertEntry.from_stored(r.chunk_id, r.text, r.meta) for r in collection.load_all()]
        return sorted(entries, key=lambda e: (SOURCE_PRIORITY.get(e.source, 9), e.entry_id))
