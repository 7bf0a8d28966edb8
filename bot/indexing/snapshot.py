"""The searchable state of the knowledge base at one moment, and the locks that keep it whole.

A snapshot names exactly one version of each document (its chunk records and the BM25 index
over them). Chroma may briefly hold two versions of a re-indexed document; a search only
accepts chunk ids its snapshot knows, so it sees the old document or the new one, never a mix.
The indexer builds a new snapshot off to the side, then swaps it in and deletes the old
version's vectors under the write lock, so no search that still holds the old snapshot can
find its chunks missing from Chroma.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bot.indexing.chunking import text_for_matching
from bot.indexing.lexical import BM25Index, TermCounts, Vocabulary, tokenize
from bot.interfaces import Source


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: str
    path: str
    version: str
    position: int
    text: str
    title: str
    heading: str
    url: str
    updated: str
    terms: TermCounts

    def source(self, score: float = 0.0, snippet_chars: int = 240) -> Source:
        snippet = self.text if len(self.text) <= snippet_chars else self.text[: snippet_chars - 1].rstrip() + "…"
        return Source(
            title=self.title,
            path=self.path,
            heading=self.heading,
            url=self.url,
            updated=self.updated,
            score=round(float(score), 4),
            snippet=snippet,
        )


def record_from_metadata(chunk_id: str, text: str, meta: dict[str, Any], vocabulary: Vocabulary) -> ChunkRecord:
    title = str(meta.get("title", ""))
    heading = str(meta.get("heading", ""))
    ids, tfs = vocabulary.encode(tokenize(text_for_matching(title, heading, text)), add=True)
    return ChunkRecord(
        chunk_id=chunk_id,
        path=str(meta.get("path", "")),
        version=str(meta.get("version", "")),
        position=int(meta.get("position", 0)),
        text=text,
        title=title,
        heading=heading,
        url=str(meta.get("url", "")),
        updated=str(meta.get("updated", "")),
        terms=TermCounts(ids, tfs),
    )


@dataclass(frozen=True)
class Snapshot:
    generation: int
    records: dict[str, ChunkRecord]
    order: list[str]  # BM25 row -> chunk id
    rows: dict[str, int]  # chunk id -> BM25 row
    bm25: BM25Index
    versions: dict[str, str] = field(default_factory=dict)  # path -> the version searches see

    @classmethod
    def build(cls, generation: int, records: Iterable[ChunkRecord], vocabulary: Vocabulary) -> Snapshot:
        ordered = sorted(records, key=lambda r: (r.path, r.position))
        order = [r.chunk_id for r in ordered]
        return cls(
            generation=generation,
            records={r.chunk_id: r for r in ordered},
            order=order,
            rows={chunk_id: row for row, chunk_id in enumerate(order)},
            bm25=BM25Index(vocabulary, [r.terms for r in ordered]),
            versions={r.path: r.version for r in ordered},
        )


class ReadWriteLock:
    """Many searches at once; the swap-and-delete waits for them and holds new ones back briefly."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._writing = True  # from here new readers wait, so the writer cannot starve
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class SearchCache:
    """A small thread-safe LRU: recent search results and question vectors (router and answerer
    search the same question)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Any | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
