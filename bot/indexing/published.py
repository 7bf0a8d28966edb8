"""What the indexer has published and searches read: the Chroma collection, the manifest of
indexed file versions, and the in-memory snapshot (chunk records + BM25) swapped in one step.

The indexer (`bot.indexing.indexer`) writes here and the searcher (`bot.indexing.searcher`)
reads; both hold the same `PublishedIndex`, so a process that indexes serves its own
publications at once, and a replica that only searches adopts the indexer's by reading the
manifest it wrote (follow mode).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.atomic import atomic_write_json
from bot.config import KnowledgeConfig
from bot.indexing.chroma_store import ChromaCollection, ChromaLocation, open_client
from bot.indexing.embedding import embedding_dimension
from bot.indexing.lexical import Vocabulary
from bot.indexing.snapshot import ReadWriteLock, Snapshot, record_from_metadata

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

INDEX_FORMAT = 1  # bump when chunk ids, metadata or matching text change: forces a rebuild
MANIFEST_FORMAT = 1


class PublishedIndex:
    def __init__(
        self, config: KnowledgeConfig, embedder: SentenceTransformer, *, state_dir: Path, embedder_name: str
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.embedder_name = embedder_name
        self.chroma = ChromaLocation.of(config.chroma_url, state_dir)
        self.manifest_path = state_dir / "knowledge" / f"manifest-{self.config.collection}.json"
        self.vocabulary = Vocabulary()
        self.indexing_here = False  # a watcher in this process keeps it current: nothing to follow
        self.followed_manifest: int | None = None  # manifest mtime_ns the snapshot was built from
        self._snapshot = Snapshot.build(0, [], self.vocabulary)
        self._rw = ReadWriteLock()
        self._store: ChromaCollection | None = None
        self._store_lock = threading.Lock()
        self.sync_lock = threading.Lock()  # one sync or follow-reload at a time

    # ---- the collection --------------------------------------------------------------------

    def fingerprint(self) -> str:
        dim = embedding_dimension(self.embedder)
        raw = json.dumps([INDEX_FORMAT, self.embedder_name, dim, self.config.chunk_size, self.config.chunk_overlap])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def open_store(self) -> ChromaCollection:
        with self._store_lock:
            if self._store is None:
                client, where = open_client(self.chroma)
                self._store = ChromaCollection(client, self.config.collection, self.fingerprint())
                log.info("knowledge index: Chroma collection %r at %s", self.config.collection, where)
                self.load_from_store(self._store)
            return self._store

    def close(self) -> None:
        with self._store_lock:
            self._store = None

    # ---- the manifest ----------------------------------------------------------------------

    def manifest_stamp(self) -> int | None:
        try:
            return self.manifest_path.stat().st_mtime_ns
        except OSError:
            return None

    def read_manifest(self) -> dict[str, dict[str, Any]]:
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

    def write_manifest(self, files: dict[str, dict[str, Any]]) -> None:
        atomic_write_json(
            self.manifest_path,
            {"format": MANIFEST_FORMAT, "fingerprint": self.fingerprint(), "files": files},
        )
        self.followed_manifest = self.manifest_stamp()  # our own publication: nothing to follow

    # ---- the snapshot ----------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @contextmanager
    def reading(self) -> Iterator[Snapshot]:
        """The snapshot, held so a publication cannot delete its chunks from Chroma meanwhile."""
        with self._rw.reading():
            yield self._snapshot

    def publish(self, snapshot: Snapshot, stale: list[str], store: ChromaCollection) -> None:
        """Swap in `snapshot` and delete the chunks no version uses any more, in one step that
        searches cannot straddle."""
        with self._rw.writing():
            self._snapshot = snapshot
            if stale:
                store.delete(stale)

    def load_from_store(self, store: ChromaCollection) -> None:
        """Serve what the last sync left behind (its manifest's versions): at start, before any
        sync, and when following another process's indexer."""
        self.followed_manifest = self.manifest_stamp()
        manifest = {} if store.rebuilt else self.read_manifest()
        wanted = {path: entry["version"] for path, entry in manifest.items()}
        if not wanted:
            return
        records = [
            record_from_metadata(c.chunk_id, c.text, c.meta, self.vocabulary)
            for c in store.load_all()
            if wanted.get(str(c.meta.get("path"))) == c.meta.get("version")
        ]
        self.publish(Snapshot.build(self._snapshot.generation + 1, records, self.vocabulary), [], store)

