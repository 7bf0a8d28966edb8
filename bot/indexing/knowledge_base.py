"""The knowledge base as the runtime holds it: one indexer and one searcher over one published
index.

Indexing (`bot.indexing.indexer`: the folder, the manifest, embedding, Chroma writes, the
watcher) and searching (`bot.indexing.searcher`: hybrid ranking, caches, follow mode) are
separate jobs with separate modules; they meet in `bot.indexing.published`, the collection and
the snapshot the indexer publishes and searches read. Most callers want both (sync at start,
then search), so this class wires them together and forwards the calls the rest of the bot
makes; a process that only searches still builds one, and follows another process's indexer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bot.config import KnowledgeConfig, Settings
from bot.indexing.indexer import IndexReport, KnowledgeIndexer
from bot.indexing.published import PublishedIndex
from bot.indexing.searcher import KnowledgeSearcher, SearchHit

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["IndexReport", "KnowledgeBase", "SearchHit", "build_knowledge_base", "embedder_name"]

BUNDLED_EMBEDDER = "bundled:all-MiniLM-L6-v2"


def embedder_name(settings: Settings) -> str:
    """What the index fingerprint calls the embedder: a new one means every chunk is re-embedded."""
    return str(settings.models.embedder_path or BUNDLED_EMBEDDER)


def build_knowledge_base(settings: Settings, embedder: SentenceTransformer) -> KnowledgeBase:
    """The knowledge base as the runtime configures it (the `[knowledge]` section, the state
    folder, the embedder's identity)."""
    return KnowledgeBase(settings.knowledge, embedder, state_dir=settings.state_dir, embedder_name=embedder_name(settings))


class KnowledgeBase:
    def __init__(
        self, config: KnowledgeConfig, embedder: SentenceTransformer, *, state_dir: Path, embedder_name: str
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.index = PublishedIndex(config, embedder, state_dir=state_dir, embedder_name=embedder_name)
        self.searcher = KnowledgeSearcher(self.index)
        self.indexer = KnowledgeIndexer(self.index, on_publish=self.searcher.forget_results)

    # ---- indexing --------------------------------------------------------------------------

    def sync(self, progress: bool = False, *, full: bool = False) -> IndexReport:
        """Bring the index in line with the knowledge folder; only changed files are re-embedded."""
        return self.indexer.sync(progress, full=full)

    def sync_paths(self, changed: Iterable[Path]) -> IndexReport:
        return self.indexer.sync_paths(changed)

    def start_watching(self) -> None:
        self.indexer.start_watching()

    @property
    def last_indexed_at(self) -> float:
        return self.indexer.last_indexed_at

    # ---- searching -------------------------------------------------------------------------

    def search(self, query: str, k: int | None = None, *, lexical_weight: float | None = None) -> list[SearchHit]:
        return self.searcher.search(query, k, lexical_weight=lexical_weight)

    def search_many(self, queries: list[str], k: int | None = None) -> list[list[SearchHit]]:
        return self.searcher.search_many(queries, k)

    def embed_query(self, text: str) -> np.ndarray:
        return self.searcher.embed_query(text)

    @property
    def generation(self) -> int:
        """Changes whenever searches may give different results (cache keys, router caches)."""
        return self.index.snapshot.generation

    def __len__(self) -> int:
        return len(self.index.snapshot.records)

    def chunk_texts(self) -> list[str]:
        """The text of every chunk a search can return now (for answerers that prepare per chunk)."""
        return [record.text for record in self.index.snapshot.records.values()]

    def published_texts(self) -> list[str]:
        """Everything the shop has published here, chunk texts and document URLs: what a generated
        answer may repeat (links, prices, codes) without having invented it."""
        records = list(self.index.snapshot.records.values())
        return [record.text for record in records] + sorted({record.url for record in records if record.url})

    def fingerprint(self) -> str:
        return self.index.fingerprint()

    def close(self) -> None:
        self.indexer.stop_watching()
        self.index.close()
