"""Embedding helpers shared by indexing, search, routing, the expert memory and training.

Indexing embeds thousands of chunks and wants every core; a search embeds one short question,
gains nothing from several threads, and on a busy CPU waits for all of them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

_THREADS_LOCK = threading.Lock()


@contextlib.contextmanager
def limited_torch_threads(limit: int) -> Iterator[None]:
    """Run one short encode on few threads (measured: p95 31 ms on 1 thread vs 490 ms on 2 on a busy CPU).

    torch's thread count is process-wide, so the change is made under a lock and undone at once;
    work in other threads during those milliseconds runs on fewer threads, never wrongly.
    """
    if limit <= 0:
        yield
        return
    import torch

    with _THREADS_LOCK:
        before = torch.get_num_threads()
        if before <= limit:
            yield
            return
        torch.set_num_threads(limit)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def embed(embedder: Any, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, so a dot product is a cosine similarity."""
    vectors = embedder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def embedding_dimension(embedder: Any) -> int | None:
    """The embedder's vector size; None when it does not say (a saved router then skips the
    dimension check, and the knowledge base refuses to index)."""
    getter = getattr(embedder, "get_embedding_dimension", None) or getattr(
        embedder, "get_sentence_embedding_dimension", None
    )
    dim = getter() if callable(getter) else None
    return int(dim) if dim else None
