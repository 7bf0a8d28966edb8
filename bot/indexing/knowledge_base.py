"""The knowledge base: keeps Chroma in step with knowledge/ and answers hybrid searches.

`sync()` is incremental: a manifest of file stats and content hashes under the state dir lets
it skip unchanged files without reading them, and content-addressed chunk ids
(`path#position@version`) make a re-index an upsert. Chroma stays the durable truth: a file
whose chunks are missing there (a crash, a wiped store) is re-indexed even if the manifest
says otherwise, and vectors of versions no file has any more are deleted.

Search fuses embedding similarity (Chroma) with BM25 (in memory) as a weighted sum tuned on
data: naive rank fusion lowered MRR in our measurements, a tuned weight raised it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.atomic import atomic_write_json
from bot.config import Settings
from bot.errors import BotError, ConfigError
from bot.indexing.chroma_store import ChromaCollection, StoredChunk, complete_versions, open_client
from bot.indexing.chunking import chunk_document, text_for_matching
from bot.indexing.documents import SUPPORTED_SUFFIXES, DocumentError, parse_document
from bot.indexing.embedding import embedding_dimension, limited_torch_threads
from bot.indexing.folder import mtime_date, progress_bar, read_stable, scan_folder, stat_unchanged
from bot.indexing.lexical import Vocabulary
from bot.indexing.snapshot import ChunkRecord, ReadWriteLock, SearchCache, Snapshot, record_from_metadata
from bot.interfaces import Source

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from bot.indexing.watcher import KnowledgeWatcher

log = logging.getLogger(__name__)

INDEX_FORMAT = 1  # bump when chunk ids, metadata or matching text change: forces a rebuild
MANIFEST_FORMAT = 1
DENSE_CANDIDATES = 40  # per search, from Chroma and from BM25 each, before fusion
EMBED_GROUP = 512  # chunks encoded and written per step: bounds memory, drives the progress bar


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    text: str
    score: float  # 0..1 fused relevance, compared with knowledge.min_score
    dense_score: float
    lexical_score: float
    source: Source


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


class KnowledgeBase:
    def __init__(self, settings: Settings, embedder: SentenceTransformer) -> None:
        self.settings = settings
        self.config = settings.knowledge
        self.embedder = embedder
        self.manifest_path = settings.state_dir / "knowledge" / f"manifest-{self.config.collection}.json"
        self._store: ChromaCollection | None = None
        self._store_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self.last_indexed_at = 0.0  # Unix time of the last sync with the folder (metrics)
        self._rw = ReadWriteLock()
        self._vocabulary = Vocabulary()
        self._snapshot = Snapshot.build(0, [], self._vocabulary)
        self._cache = SearchCache()
        self._vectors = SearchCache(size=128)
        self._query_encoder: Any = None
        self._warned: dict[str, tuple[int, int]] = {}
        self._watcher: KnowledgeWatcher | None = None
        self._followed_manifest: int | None = None  # manifest mtime_ns the snapshot was built from
        self._follow_checked = 0.0

    # ---- opening -------------------------------------------------------------------------

    def fingerprint(self) -> str:
        dim = embedding_dimension(self.embedder)
        embedder = str(self.settings.models.embedder_path or "bundled:all-MiniLM-L6-v2")
        raw = json.dumps([INDEX_FORMAT, embedder, dim, self.config.chunk_size, self.config.chunk_overlap])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def _open_store(self) -> ChromaCollection:
        with self._store_lock:
            if self._store is None:
                client, where = open_client(self.settings)
                self._store = ChromaCollection(client, self.config.collection, self.fingerprint())
                log.info("knowledge index: Chroma collection %r at %s", self.config.collection, where)
                self._load_snapshot_from_store(self._store)
            return self._store

    def _manifest_stamp(self) -> int | None:
        try:
            return self.manifest_path.stat().st_mtime_ns
        except OSError:
            return None

    def _follow(self, store: ChromaCollection) -> None:
        """Replicas that never index: adopt what the indexer published since the last look."""
        interval = self.config.follow_interval_s
        now = time.monotonic()
        if interval <= 0 or self._watcher is not None or now - self._follow_checked < interval:
            return
        self._follow_checked = now
        stamp = self._manifest_stamp()
        if stamp is None or stamp == self._followed_manifest:
            return
        with self._sync_lock:
            self._load_snapshot_from_store(store)
        self._cache.clear()
        log.info("knowledge index followed the indexer: %d chunks now served", len(self._snapshot.records))

    def _load_snapshot_from_store(self, store: ChromaCollection) -> None:
        """Before the first sync, serve what the last sync left behind (its manifest's versions)."""
        self._followed_manifest = self._manifest_stamp()
        manifest = {} if store.rebuilt else self._read_manifest()
        wanted = {path: entry["version"] for path, entry in manifest.items()}
        if not wanted:
            return
        records = [
            record_from_metadata(c.chunk_id, c.text, c.meta, self._vocabulary)
            for c in store.load_all()
            if wanted.get(str(c.meta.get("path"))) == c.meta.get("version")
        ]
        snapshot = Snapshot.build(self._snapshot.generation + 1, records, self._vocabulary)
        with self._rw.writing():
            self._snapshot = snapshot

    # ---- manifest --------------------------------------------------------------------------

    def _read_manifest(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("%s is unreadable (%s): re-checking every file", self.manifest_path, exc)
            return {}
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or data.get("fingerprint") != self.fingerprint():
            return {}
        files = data.get("files")
        return files if isinstance(files, dict) else {}

    def _write_manifest(self, files: dict[str, dict[str, Any]]) -> None:
        atomic_write_json(
            self.manifest_path,
            {"format": MANIFEST_FORMAT, "fingerprint": self.fingerprint(), "files": files},
        )

    # ---- sync ------------------------------------------------------------------------------

    def sync(self, progress: bool = False, *, full: bool = False) -> IndexReport:
        """Bring the index in line with the knowledge folder; only changed files are re-embedded."""
        with self._sync_lock:
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
        with self._sync_lock:
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
        store = self._open_store()
        if full:
            store.reset()
        manifest = {} if (full or store.rebuilt) else self._read_manifest()
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
        if report.changed or stale or added_records or self._snapshot.versions != active:
            self._swap(active, added_records, stored, stale, store)
        report.chunks_total = len(self._snapshot.records)
        self._write_manifest(new_manifest)
        self._followed_manifest = self._manifest_stamp()  # our own publication: nothing to follow
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
                records.extend(record_from_metadata(ids[i], texts[i], metas[i], self._vocabulary) for i in group)
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
            r.chunk_id: r for r in self._snapshot.records.values() if (r.path, r.version) in wanted
        }
        records.update({r.chunk_id: r for r in added})
        for chunk in stored:
            if chunk.chunk_id not in records and (chunk.meta.get("path"), chunk.meta.get("version")) in wanted:
                records[chunk.chunk_id] = record_from_metadata(chunk.chunk_id, chunk.text, chunk.meta, self._vocabulary)
        snapshot = Snapshot.build(self._snapshot.generation + 1, records.values(), self._vocabulary)
        with self._rw.writing():
            self._snapshot = snapshot
            if stale:
                store.delete(stale)
        self._cache.clear()

    # ---- search ----------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Changes whenever searches may give different results (cache keys, router caches)."""
        return self._snapshot.generation

    def __len__(self) -> int:
        return len(self._snapshot.records)

    def chunk_texts(self) -> list[str]:
        """The text of every chunk a search can return now (for answerers that prepare per chunk)."""
        return [record.text for record in self._snapshot.records.values()]

    def published_texts(self) -> list[str]:
        """Everything the shop has published here, chunk texts and document URLs: what a generated
        answer may repeat (links, prices, codes) without having invented it."""
        records = list(self._snapshot.records.values())
        return [record.text for record in records] + sorted({record.url for record in records if record.url})

    def search(self, query: str, k: int | None = None, *, lexical_weight: float | None = None) -> list[SearchHit]:
        """The k most relevant chunks, best first; `score` fuses embedding and BM25 relevance."""
        query = " ".join(query.split())
        if not query:
            return []
        k = k or self.config.top_k
        weight = self.config.lexical_weight if lexical_weight is None else lexical_weight
        store = self._open_store()
        self._follow(store)
        key = (query, k, weight, self._snapshot.generation)
        cached = self._cache.get(key)
        if cached is not None:
            return list(cached)
        vector = self.embed_query(query)
        with self._rw.reading():
            snapshot = self._snapshot
            hits = self._rank(store, snapshot, query, vector, k, weight)
        self._cache.put((query, k, weight, snapshot.generation), hits)
        return list(hits)

    def embed_query(self, text: str) -> np.ndarray:
        """The question's float32 vector (same as the index's encoder), remembered for a while:
        the router and the answerer search the same question with different `k`."""
        cached = self._vectors.get((text,))
        if cached is not None:
            return cached
        if self._query_encoder is None:
            from bot.query_encoder import QueryEncoder

            self._query_encoder = QueryEncoder(self.embedder, "float32")
        with limited_torch_threads(self.config.query_threads):
            encoded = self._query_encoder.encode([text])
        vector = np.asarray(encoded[0], dtype=np.float32)
        self._vectors.put((text,), vector)
        return vector

    def _rank(
        self, store: ChromaCollection, snapshot: Snapshot, query: str, vector: np.ndarray, k: int, weight: float
    ) -> list[SearchHit]:
        if not snapshot.records:
            return []
        wanted = min(max(DENSE_CANDIDATES, 2 * k), len(snapshot.order))
        # Ask Chroma for extra: during a re-index it may also hold the other version's chunks.
        dense = {cid: sim for cid, sim in store.nearest(vector, 2 * wanted) if cid in snapshot.records}
        lexical = snapshot.bm25.scores(query)
        lexical_ids: list[str] = []
        if weight > 0 and lexical.size:
            top = np.argpartition(-lexical, min(wanted, lexical.size) - 1)[:wanted]
            lexical_ids = [snapshot.order[i] for i in top if lexical[i] > 0]
        missing = [cid for cid in lexical_ids if cid not in dense]
        if missing:
            for cid, stored_vector in store.embeddings(missing).items():
                dense[cid] = float(np.dot(vector, stored_vector))
        scored = []
        for cid in set(dense) | set(lexical_ids):
            d = min(max(dense.get(cid, 0.0), 0.0), 1.0)
            lx = float(lexical[snapshot.rows[cid]])
            scored.append(((1.0 - weight) * d + weight * lx, d, lx, cid))
        scored.sort(key=lambda item: (-item[0], item[3]))
        hits = []
        for score, d, lx, cid in scored[:k]:
            record = snapshot.records[cid]
            hits.append(SearchHit(cid, record.text, round(score, 4), round(d, 4), round(lx, 4), record.source(score)))
        return hits

    # ---- live updates ----------------------------------------------------------------------

    def start_watching(self) -> None:
        """Re-index changed files in the background until `close()`; returns once watching."""
        from bot.indexing.watcher import KnowledgeWatcher

        if self._watcher is not None:
            return
        self._watcher = KnowledgeWatcher(self.config.dir, self._on_files_changed, self.config.watch_debounce_ms)
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

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        with self._store_lock:
            self._store = None
