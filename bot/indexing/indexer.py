"""Keeps the Chroma collection in step with the knowledge folder, and publishes each result.

`sync()` is incremental: a manifest of file stats and content hashes under the state dir lets
it skip unchanged files without reading them, and content-addressed chunk ids
(`path#position@version`) make a re-index an upsert. Chroma stays the durable truth: a file
whose chunks are missing there (a crash, a wiped store) is re-indexed even if the manifest
says otherwise, and vectors of versions no file has any more are deleted. A file that cannot be
read or parsed is skipped with one warning per version, and its last good version keeps serving.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.errors import BotError, ConfigError
from bot.indexing.chroma_store import ChromaCollection, StoredChunk, complete_versions
from bot.indexing.chunking import chunk_document, text_for_matching
from bot.indexing.documents import SUPPORTED_SUFFIXES, DocumentError, parse_document
from bot.indexing.embedding import embedding_dimension
from bot.indexing.folder import mtime_date, progress_bar, read_stable, scan_folder, stat_unchanged
from bot.indexing.published import PublishedIndex
from bot.indexing.snapshot import ChunkRecord, Snapshot, record_from_metadata

if TYPE_CHECKING:
    from bot.indexing.watcher import KnowledgeWatcher

log = logging.getLogger(__name__)

EMBED_GROUP = 512  # chunks encoded and written per step: bounds memory, drives the progress bar


@dataclass
class IndexReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # skipped path -> why
    unchanged: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    embedded: int = 0  # chunks that needed the embedder (others reused stored vectors)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{len(self.skipped)} skipped, {self.unchanged} unchanged; {self.chunks_added} chunks "
            f"written, {self.chunks_removed} deleted, {self.chunks_total} in the index ({self.seconds:.1f}s)"
        )


@dataclass(frozen=True)
class _PendingDocument:
    path: str
    version: str
    ids: list[str]
    texts: list[str]
    matching: list[str]
    metas: list[dict[str, Any]]


class KnowledgeIndexer:
    def __init__(self, index: PublishedIndex, on_publish: Callable[[], None] = lambda: None) -> None:
        self.index = index
        self.config = index.config
        self.embedder = index.embedder
        self.on_publish = on_publish  # the searcher drops results of older snapshots
        self.last_indexed_at = 0.0  # Unix time of the last sync with the folder (metrics)
        self._warned: dict[str, tuple[int, int]] = {}
        self._watcher: KnowledgeWatcher | None = None

    def sync(self, progress: bool = False, *, full: bool = False) -> IndexReport:
        """Bring the index in line with the knowledge folder; only changed files are re-embedded."""
        with self.index.sync_lock:
            report = self._sync(progress=progress, full=full, force=frozenset())
            self.last_indexed_at = time.time()
            return report

    def sync_paths(self, changed: Iterable[Path]) -> IndexReport:
        """Incremental sync that re-reads `changed` even when their size and mtime look unchanged."""
        root = self.config.dir.resolve()
        force = set()
        for path in changed:
            try:
                force.add(Path(path).resolve().relative_to(root).as_posix())
            except ValueError:
                continue
        with self.index.sync_lock:
            report = self._sync(progress=False, full=False, force=frozenset(force))
            self.last_indexed_at = time.time()
            return report

    def _sync(self, *, progress: bool, full: bool, force: frozenset[str]) -> IndexReport:
        started = time.perf_counter()
        root = self.config.dir
        if not root.is_dir():
            raise ConfigError(
                f"knowledge.dir: {root} is not a folder (create it and add your policy documents, or fix the path)"
            )
        store = self.index.open_store()
        if full:
            store.reset()
        manifest = {} if (full or store.rebuilt) else self.index.read_manifest()
        stored = list(store.load_all()) if not full else []
        complete = complete_versions(stored)
        previous = {p: e["version"] for p, e in manifest.items() if (p, e.get("version")) in complete}
        report = IndexReport()
        active: dict[str, str] = {}
        new_manifest: dict[str, dict[str, Any]] = {}
        pending: list[_PendingDocument] = []

        files, unsupported, refused_links = scan_folder(root)
        for rel, link, reason in refused_links:
            with contextlib.suppress(OSError):  # gone already: nothing to report
                self._skip(report, rel, link.lstat(), reason)
        for rel, path in unsupported:
            with contextlib.suppress(OSError):  # gone already: nothing to report
                self._skip(report, rel, path.stat(), f"unsupported file type {path.suffix or '(no suffix)'}; "
                           f"use {', '.join(sorted(SUPPORTED_SUFFIXES))}, or move it out of {root}")
        for rel, path in files:
            entry = manifest.get(rel)
            try:
                stat = path.stat()
            except OSError:
                continue  # deleted between the listing and now: handled as removed
            if entry and rel not in force and stat_unchanged(entry, stat) and rel in previous:
                active[rel], new_manifest[rel] = entry["version"], entry
                continue
            if stat.st_size > self.config.max_file_bytes:
                self._skip(report, rel, stat, f"{stat.st_size} bytes is over knowledge.max_file_bytes "
                           f"({self.config.max_file_bytes}); split the file or raise the limit")
                self._keep_previous(rel, previous, manifest, active, new_manifest)
                continue
            try:
                read = read_stable(path)
            except FileNotFoundError:
                continue  # deleted while we looked: reported as removed
            except OSError as exc:
                self._skip(report, rel, stat, f"cannot be read ({exc.strerror or exc}); check its permissions")
                self._keep_previous(rel, previous, manifest, active, new_manifest)
                continue
            if read is None:
                self._skip(report, rel, stat, "the file kept changing while being read; it will be indexed on the next sync")
                self._keep_previous(rel, previous, manifest, active, new_manifest)
                continue
            data, stat = read
            digest = hashlib.sha256(data).hexdigest()
            version = digest[:16]
            entry = {"sha256": digest, "version": version, "size": stat.st_size,
                     "mtime_ns": stat.st_mtime_ns, "checked_ns": time.time_ns()}
            if (rel, version) in complete:
                active[rel], new_manifest[rel] = version, {**entry, "chunks": complete[(rel, version)]}
                continue
            try:
                document = parse_document(rel, data, fallback_updated=mtime_date(stat.st_mtime))
            except DocumentError as exc:
                self._skip(report, rel, stat, str(exc))
                self._keep_previous(rel, previous, manifest, active, new_manifest)
                continue
            self._warned.pop(rel, None)
            pending.append(self._prepare(document, version))
            active[rel], new_manifest[rel] = version, {**entry, "chunks": len(pending[-1].ids)}

        added_records = self._embed_and_write(store, pending, stored, report, progress)
        for rel, version in active.items():
            if rel not in previous:
                report.added.append(rel)
            elif previous[rel] != version:
                report.updated.append(rel)
            else:
                report.unchanged += 1
        report.removed = sorted(set(previous) - set(active))
        keep = set(active.items())
        stale = [c.chunk_id for c in stored if (c.meta.get("path"), c.meta.get("version")) not in keep]
        report.chunks_removed = len(stale)
        if report.changed or stale or added_records or self.index.snapshot.versions != active:
            self._swap(active, added_records, stored, stale, store)
        report.chunks_total = len(self.index.snapshot.records)
        self.index.write_manifest(new_manifest)
        report.seconds = time.perf_counter() - started
        log.info("knowledge index synced: %s", report.summary())
        return report

    def _skip(self, report: IndexReport, rel: str, stat: Any, reason: str) -> None:
        report.skipped.append(rel)
        report.reasons[rel] = reason
        seen = (stat.st_size, stat.st_mtime_ns)
        if self._warned.get(rel) != seen:  # one warning per version of a bad file, not per sync
            self._warned[rel] = seen
            log.warning("skipped knowledge file %s: %s", rel, reason)

    @staticmethod
    def _keep_previous(
        rel: str,
        previous: dict[str, str],
        manifest: dict[str, dict[str, Any]],
        active: dict[str, str],
        new_manifest: dict[str, dict[str, Any]],
    ) -> None:
        """A file that became unreadable keeps serving its last good version rather than vanish."""
        if rel in previous:
            active[rel] = previous[rel]
            new_manifest[rel] = {**manifest[rel], "mtime_ns": -1}  # never trust the stat shortcut for it

    def _prepare(self, document: Any, version: str) -> _PendingDocument:
        chunks = chunk_document(document, self.config.chunk_size, self.config.chunk_overlap)
        tags = ",".join(document.tags)
        ids, texts, matching, metas = [], [], [], []
        for chunk in chunks:
            match_text = text_for_matching(document.title, chunk.heading, chunk.text)
            ids.append(f"{document.path}#{chunk.position}@{version}")
            texts.append(chunk.text)
            matching.append(match_text)
            metas.append({
                "path": document.path, "version": version, "position": chunk.position,
                "n_chunks": len(chunks), "title": document.title, "heading": chunk.heading,
                "url": document.url, "updated": document.updated, "tags": tags,
                "text_sha": hashlib.sha256(match_text.encode()).hexdigest()[:20],
            })
        return _PendingDocument(document.path, version, ids, texts, matching, metas)

    def _embed_and_write(
        self,
        store: ChromaCollection,
        pending: list[_PendingDocument],
        stored: list[StoredChunk],
        report: IndexReport,
        progress: bool,
    ) -> list[ChunkRecord]:
        """Embed new chunks (reusing stored vectors of identical text) and upsert them to Chroma."""
        ids = [i for doc in pending for i in doc.ids]
        if not ids:
            return []
        texts = [t for doc in pending for t in doc.texts]
        matching = [m for doc in pending for m in doc.matching]
        metas = [m for doc in pending for m in doc.metas]
        reusable = {str(c.meta.get("text_sha")): c.chunk_id for c in stored}
        bar = progress_bar(progress, len(ids))
        records: list[ChunkRecord] = []
        # Longest first, as SentenceTransformer sorts inside one call: groups of similar length
        # waste no time on padding, so grouping costs nothing against one big encode.
        order = sorted(range(len(ids)), key=lambda i: -len(matching[i]))
        try:
            for start in range(0, len(ids), EMBED_GROUP):
                group = order[start : start + EMBED_GROUP]
                vectors = self._vectors_for([matching[i] for i in group], [metas[i] for i in group], reusable, store, report)
                store.add([ids[i] for i in group], vectors, [texts[i] for i in group], [metas[i] for i in group])
                records.extend(record_from_metadata(ids[i], texts[i], metas[i], self.index.vocabulary) for i in group)
                if bar is not None:
                    bar[0].advance(bar[1], len(group))
        finally:
            if bar is not None:
                bar[0].stop()
        report.chunks_added = len(ids)
        return records

    def _vectors_for(
        self,
        matching: list[str],
        metas: list[dict[str, Any]],
        reusable: dict[str, str],
        store: ChromaCollection,
        report: IndexReport,
    ) -> np.ndarray:
        known = {i: reusable[m["text_sha"]] for i, m in enumerate(metas) if m["text_sha"] in reusable}
        found = store.embeddings(list(set(known.values()))) if known else {}
        todo = [i for i in range(len(matching)) if known.get(i) not in found]
        dim = embedding_dimension(self.embedder)
        if dim is None:
            raise BotError("the embedder does not report its vector size (models.embedder_path: use a "
                           "sentence-transformers model)")
        vectors = np.zeros((len(matching), dim), dtype=np.float32)
        for i, chunk_id in known.items():
            if chunk_id in found:
                vectors[i] = found[chunk_id]
        if todo:
            encoded = self.embedder.encode(
                [matching[i] for i in todo], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
            vectors[todo] = np.asarray(encoded, dtype=np.float32)
            report.embedded += len(todo)
        return vectors

    def _swap(
        self,
        active: dict[str, str],
        added: list[ChunkRecord],
        stored: list[StoredChunk],
        stale: list[str],
        store: ChromaCollection,
    ) -> None:
        """Publish the new versions and drop the old ones in one step that searches cannot straddle."""
        wanted = set(active.items())
        records: dict[str, ChunkRecord] = {
            r.chunk_id: r for r in self.index.snapshot.records.values() if (r.path, r.version) in wanted
        }
        records.update({r.chunk_id: r for r in added})
        for chunk in stored:
            if chunk.chunk_id not in records and (chunk.meta.get("path"), chunk.meta.get("version")) in wanted:
                records[chunk.chunk_id] = record_from_metadata(chunk.chunk_id, chunk.text, chunk.meta, self.index.vocabulary)
        snapshot = Snapshot.build(self.index.snapshot.generation + 1, records.values(), self.index.vocabulary)
        self.index.publish(snapshot, stale, store)
        self.on_publish()

    def start_watching(self) -> None:
        """Re-index changed files in the background until `close()`; returns once watching."""
        from bot.indexing.watcher import KnowledgeWatcher

        if self._watcher is not None:
            return
        self._watcher = KnowledgeWatcher(self.config.dir, self._on_files_changed, self.config.watch_debounce_ms)
        self.index.indexing_here = True
        self._watcher.start()
        # Anything written between the last sync and the watcher's start would otherwise wait
        # for the next change to be noticed.
        self._on_files_changed(set())

    def _on_files_changed(self, paths: set[Path]) -> None:
        report = self.sync_paths(paths)
        if report.changed:
            log.info(
                "knowledge re-indexed: added=%s updated=%s removed=%s", report.added, report.updated, report.removed
            )

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
            self.index.indexing_here = False
