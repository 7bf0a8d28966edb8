"""The Chroma side of the knowledge base: one collection, embedded or on a server.

Chroma holds the chunks, their embeddings and metadata; it is the durable truth of what is
indexed. Writes are split into batches of the server's maximum size, because a large
knowledge base otherwise fails on its first full index. A fingerprint of everything that
changes the vectors (embedder, chunking) is kept in the collection's metadata so a changed
setting triggers a rebuild instead of mixing incompatible vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from bot.errors import ConfigError

log = logging.getLogger(__name__)

_LOAD_PAGE = 2000


@dataclass(frozen=True)
class StoredChunk:
    chunk_id: str
    text: str
    meta: dict[str, Any]


def _client_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False)


@dataclass(frozen=True)
class ChromaLocation:
    """Where the collections live: a Chroma server (`knowledge.chroma_url`), or, when that is
    empty, the embedded store in `embedded_dir` (`<state_dir>/chroma`). The knowledge base and the
    expert memory keep their collections side by side, so both open clients from one of these."""

    url: str
    embedded_dir: Path

    @classmethod
    def of(cls, chroma_url: str, state_dir: Path) -> ChromaLocation:
        return cls(chroma_url.strip(), state_dir / "chroma")


def open_client(location: ChromaLocation) -> tuple[Any, str]:
    """The Chroma client the config asks for, and a description of where it points (for logs)."""
    import chromadb

    url = location.url
    if not url:
        path = location.embedded_dir
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=_client_settings()), str(path)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"knowledge.chroma_url: {url!r} is not an http(s)://host:port URL "
            "(fix it, or leave it empty for the embedded store)"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 8000)
    try:
        client = chromadb.HttpClient(
            host=parsed.hostname, port=port, ssl=parsed.scheme == "https", settings=_client_settings()
        )
        client.heartbeat()
    except Exception as exc:  # chromadb raises several unrelated types for "cannot connect"
        raise ConfigError(
            f"knowledge.chroma_url: cannot reach the Chroma server at {url} ({type(exc).__name__}); "
            "start it (chroma run --path DIR --host 127.0.0.1 --port N) or fix the URL"
        ) from None
    return client, url


class ChromaCollection:
    def __init__(self, client: Any, name: str, fingerprint: str) -> None:
        self.client = client
        self.name = name
        self.fingerprint = fingerprint
        self.rebuilt = False
        self._collection = self._open(reset=False)
        try:
            self.max_batch = max(1, int(client.get_max_batch_size()))
        except Exception:  # older servers do not say; Chroma's documented default
            self.max_batch = 5461

    def _open(self, *, reset: bool) -> Any:
        try:
            if reset:
                try:
                    self.client.delete_collection(self.name)
                except Exception as exc:  # not there: nothing to delete
                    log.debug("delete_collection %s: %s", self.name, exc)
            collection = self.client.get_or_create_collection(
                self.name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"supportbot_fingerprint": self.fingerprint},
                embedding_function=None,
            )
        except ValueError as exc:
            raise ConfigError(f"knowledge.collection: {self.name!r} is not usable ({exc})") from None
        except Exception as exc:
            if "name" in str(exc).lower():
                raise ConfigError(
                    f"knowledge.collection: {self.name!r} is not a valid Chroma collection name "
                    "(3-512 characters from a-z, A-Z, 0-9, '.', '_', '-')"
                ) from None
            raise
        stored = (collection.metadata or {}).get("supportbot_fingerprint")
        if stored != self.fingerprint and not reset:
            log.warning(
                "knowledge collection %r was built with different settings (embedder or chunking "
                "changed): rebuilding it",
                self.name,
            )
            self.rebuilt = True
            return self._open(reset=True)
        return collection

    def reset(self) -> None:
        self._collection = self._open(reset=True)
        self.rebuilt = True

    def count(self) -> int:
        return int(self._collection.count())

    def load_all(self) -> Iterator[StoredChunk]:
        offset = 0
        while True:
            page = self._collection.get(include=["documents", "metadatas"], limit=_LOAD_PAGE, offset=offset)
            ids = page["ids"]
            if not ids:
                return
            for chunk_id, text, meta in zip(ids, page["documents"] or [], page["metadatas"] or [], strict=False):
                yield StoredChunk(chunk_id, text or "", dict(meta or {}))
            offset += len(ids)
            if len(ids) < _LOAD_PAGE:
                return

    def add(self, ids: Sequence[str], embeddings: np.ndarray, texts: Sequence[str], metas: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self._collection.upsert(
                ids=list(ids[start:end]),
                embeddings=embeddings[start:end],
                documents=list(texts[start:end]),
                metadatas=list(metas[start:end]),
            )

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), self.max_batch):
            self._collection.delete(ids=list(ids[start : start + self.max_batch]))

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), self.max_batch):
            page = self._collection.get(ids=list(ids[start : start + self.max_batch]), include=["embeddings"])
            vectors = page["embeddings"]
            if vectors is None:
                continue
            for chunk_id, vector in zip(page["ids"], vectors, strict=False):
                found[chunk_id] = np.asarray(vector, dtype=np.float32)
        return found

    def nearest(self, query: np.ndarray, n: int) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the n nearest stored chunks, any version."""
        return self.nearest_many([query], n)[0]

    def nearest_many(self, queries: Sequence[np.ndarray], n: int) -> list[list[tuple[str, float]]]:
        """`nearest` for many vectors in one call per page: router training asks for hundreds."""
        if n <= 0 or not len(queries):
            return [[] for _ in queries]
        found: list[list[tuple[str, float]]] = []
        for start in range(0, len(queries), self.max_batch):
            page = list(queries[start : start + self.max_batch])
            result = self._collection.query(query_embeddings=page, n_results=n, include=["distances"])
            all_ids = result["ids"] or [[] for _ in page]
            all_distances = result["distances"] or [[] for _ in page]
            for ids, distances in zip(all_ids, all_distances, strict=True):
                found.append([(chunk_id, 1.0 - float(d)) for chunk_id, d in zip(ids, distances, strict=False)])
        return found


    def query(self, vector: np.ndarray, n: int) -> list[tuple[StoredChunk, float]]:
        """The n nearest records with their text and metadata, and their cosine similarity."""
        if n <= 0:
            return []
        result = self._collection.query(
            query_embeddings=[vector], n_results=n, include=["documents", "metadatas", "distances"]
        )
        ids = result["ids"][0] if result["ids"] else []
        docs = result["documents"][0] if result["documents"] else []
        metas = result["metadatas"][0] if result["metadatas"] else []
        distances = result["distances"][0] if result["distances"] else []
        return [
            (StoredChunk(record_id, doc or "", dict(meta or {})), 1.0 - float(distance))
            for record_id, doc, meta, distance in zip(ids, docs, metas, distances, strict=False)
        ]


def complete_versions(stored: list[StoredChunk]) -> dict[tuple[str, str], int]:
    """(path, version) -> chunk count, for versions whose every chunk is in Chroma."""
    counts: dict[tuple[str, str], int] = {}
    expected: dict[tuple[str, str], int] = {}
    for chunk in stored:
        key = (str(chunk.meta.get("path")), str(chunk.meta.get("version")))
        counts[key] = counts.get(key, 0) + 1
        expected[key] = int(chunk.meta.get("n_chunks", -1))
    return {key: n for key, n in counts.items() if expected.get(key) == n}
