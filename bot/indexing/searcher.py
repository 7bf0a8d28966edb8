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
from bot.indexing.embedding import limited_torch_threads
from bot.indexing.published import PublishedIndex
from bot.indexing.snapshot import SearchCache, Snapshot
from bot.interfaces import Source

log = logging.getLogger(__name__)

DENSE_CANDIDATES = 40  # per search, from Chroma and from BM25 each, before fusion


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

    def embed_query(self, text: str) -> np.ndarray:
        """The question's float32 vector (same as the index's encoder), remembered for a while:
        the router and the answerer search the same question with different `k`."""
        cached = self._vectors.get((text,))
        if cached is not None:
            return cached
        if self._query_encoder is None:
            from bot.query_encoder import QueryEncoder

            self._query_encoder = QueryEncoder(self.index.embedder, "float32")
        with limited_torch_threads(self.config.query_threads):
            encoded = self._query_encoder.encode([text])
        vector = np.asarray(encoded[0], dtype=np.float32)
        self._vectors.put((text,), vector)
        return vector

    def rank(
        self, store: ChromaCollection, snapshot: Snapshot, query: str, vector: np.ndarray, k: int, weight: float
    ) -> list[SearchHit]:
        """The fused ranking itself, uncached (the benchmark sweeps `weight` through it)."""
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
