"""Hybrid search over the published knowledge index.

Search fuses embedding similarity (Chroma) with BM25 (in memory) as a weighted sum tuned on
data: naive rank fusion lowered MRR in our measurements, a tuned weight raised it. A replica
that never indexes follows the indexer: when the manifest it publishes changes, the next search
adopts the new snapshot (`knowledge.follow_interval_s`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.indexing.chroma_store import ChromaCollection
from bot.indexing.embedding import encode_by_length, limited_torch_threads
from bot.indexing.published import PublishedIndex
from bot.indexing.snapshot import SearchCache, Snapshot
from bot.interfaces import Source

log = logging.getLogger(__name__)

DENSE_CANDIDATES = 40  # per search, from Chroma and from BM25 each, before fusion
QUERY_BATCH = 64  # questions encoded together by search_many


@dataclass(frozen=True)
class SearchHit:
    chunk_id: str
    text: str
    score: float  # 0..1 fused relevance, compared with knowledge.min_score
    dense_score: float
    lexical_score: float
    source: Source


class KnowledgeSearcher:
    def __init__(self, index: PublishedIndex) -> None:
        self.index = index
        self.config = index.config
        self._cache = SearchCache()
        self._vectors = SearchCache(size=128)
        self._query_encoder: Any = None
        self._follow_checked = 0.0

    def clear_caches(self) -> None:
        """Forget remembered results and question vectors (a benchmark measuring the uncached path)."""
        self._cache.clear()
        self._vectors.clear()

    def forget_results(self) -> None:
        """Results of an older snapshot are never served (keys carry the generation); this only
        frees their memory after a publication."""
        self._cache.clear()

    def search(self, query: str, k: int | None = None, *, lexical_weight: float | None = None) -> list[SearchHit]:
        """The k most relevant chunks, best first; `score` fuses embedding and BM25 relevance."""
        query = " ".join(query.split())
        if not query:
            return []
        k = k or self.config.top_k
        weight = self.config.lexical_weight if lexical_weight is None else lexical_weight
        store = self.index.open_store()
        self._follow(store)
        key = (query, k, weight, self.index.snapshot.generation)
        cached = self._cache.get(key)
        if cached is not None:
            return list(cached)
        vector = self.embed_query(query)
        with self.index.reading() as snapshot:
            hits = self.rank(store, snapshot, query, vector, k, weight)
        self._cache.put((query, k, weight, snapshot.generation), hits)
        return list(hits)

    def search_many(self, queries: list[str], k: int | None = None) -> list[list[SearchHit]]:
        """`search` for a batch of questions, results in the same order: one batched encoding and
        one Chroma query instead of an encoding and two Chroma calls per question (the router's
        264 seed questions: 5.0 s one by one, 0.74 s so). Results are not cached: a batch is a
        training job, not customers asking again."""
        queries = [" ".join(q.split()) for q in queries]
        k = k or self.config.top_k
        weight = self.config.lexical_weight
        store = self.index.open_store()
        self._follow(store)
        asked = [q for q in queries if q]
        vectors = self.embed_queries(asked)
        with self.index.reading() as snapshot:
            ranked = iter(self.rank_many(store, snapshot, asked, vectors, k, weight))
        return [next(ranked) if q else [] for q in queries]

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """Float32 vectors of many questions (as `embed_query` makes them), encoded in batches of similar length."""
        return encode_by_length(self._encoder().encode, texts, QUERY_BATCH)

    def _encoder(self) -> Any:
        """The question encoder (the index's embedder at float32), made on first use."""
        if self._query_encoder is None:
            from bot.query_encoder import QueryEncoder

            self._query_encoder = QueryEncoder(self.index.embedder, "float32")
        return self._query_encoder

    def embed_query(self, text: str) -> np.ndarray:
        """The question's float32 vector (same as the index's encoder), remembered for a while:
        the router and the answerer search the same question with different `k`."""
        cached = self._vectors.get((text,))
        if cached is not None:
            return cached
        with limited_torch_threads(self.config.query_threads):
            encoded = self._encoder().encode([text])
        vector = np.asarray(encoded[0], dtype=np.float32)
        self._vectors.put((text,), vector)
        return vector

    def rank(
        self, store: ChromaCollection, snapshot: Snapshot, query: str, vector: np.ndarray, k: int, weight: float
    ) -> list[SearchHit]:
        """The fused ranking itself, uncached (the benchmark sweeps `weight` through it)."""
        return self.rank_many(store, snapshot, [query], np.asarray([vector]), k, weight)[0]

    def rank_many(
        self, store: ChromaCollection, snapshot: Snapshot, queries: list[str], vectors: np.ndarray, k: int,
        weight: float,
    ) -> list[list[SearchHit]]:
        """`rank` for each query, with one Chroma query for all and one fetch of the vectors that
        only BM25 found."""
        if not snapshot.records or not queries:
            return [[] for _ in queries]
        wanted = min(max(DENSE_CANDIDATES, 2 * k), len(snapshot.order))
        # Ask Chroma for extra: during a re-index it may also hold the other version's chunks.
        nearest = store.nearest_many(list(vectors), 2 * wanted)
        candidates = []
        for query, found in zip(queries, nearest, strict=True):
            dense = {cid: sim for cid, sim in found if cid in snapshot.records}
            lexical = snapshot.bm25.scores(query)
            lexical_ids: list[str] = []
            if weight > 0 and lexical.size:
                top = np.argpartition(-lexical, min(wanted, lexical.size) - 1)[:wanted]
                lexical_ids = [snapshot.order[i] for i in top if lexical[i] > 0]
            candidates.append((dense, lexical, lexical_ids))
        missing = sorted({cid for dense, _, ids in candidates for cid in ids if cid not in dense})
        stored = store.embeddings(missing) if missing else {}
        ranked = []
        for (dense, lexical, lexical_ids), vector in zip(candidates, vectors, strict=True):
            for cid in lexical_ids:
                if cid not in dense and cid in stored:
                    dense[cid] = float(np.dot(vector, stored[cid]))
            ranked.append(self._fuse(snapshot, dense, lexical, lexical_ids, k, weight))
        return ranked

    @staticmethod
    def _fuse(
        snapshot: Snapshot, dense: dict[str, float], lexical: np.ndarray, lexical_ids: list[str], k: int,
        weight: float,
    ) -> list[SearchHit]:
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

    def _follow(self, store: ChromaCollection) -> None:
        """Replicas that never index: adopt what the indexer published since the last look."""
        interval = self.config.follow_interval_s
        now = time.monotonic()
        if interval <= 0 or self.index.indexing_here or now - self._follow_checked < interval:
            return
        self._follow_checked = now
        stamp = self.index.manifest_stamp()
        if stamp is None or stamp == self.index.followed_manifest:
            return
        with self.index.sync_lock:
            self.index.load_from_store(store)
        self._cache.clear()
        log.info("knowledge index followed the indexer: %d chunks now served", len(self.index.snapshot.records))
