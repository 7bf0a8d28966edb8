"""Embedding helpers shared by indexing, search, routing, the expert memory and training.

Indexing embeds thousands of chunks and wants every core; a search embeds one short question,
gains nothing from several threads, and on a busy CPU waits for all of them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
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


def encode_by_length(encode: Callable[[list[str]], Any], texts: list[str], batch_size: int) -> np.ndarray:
    """`encode(texts)` in batches of similar length, rows back in the caller's order: padding a
    short question to a long sentence's length wastes most of a batch's time."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows: dict[int, np.ndarray] = {}
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        rows.update(zip(batch, np.asarray(encode([texts[i] for i in batch]), dtype=np.float32), strict=True))
    return np.stack([rows[i] for i in range(len(texts))]) if texts else np.zeros((0, 0), dtype=np.float32)


def embedding_dimension(embedder: Any) -> int | None:
    """The embedder's vector size; None when it does not say (a saved router then skips the
    dimension check, and the knowledge base refuses to index)."""
    getter = getattr(embedder, "get_embedding_dimension", None) or getattr(
        embedder, "get_sentence_embedding_dimension", None
    )
    dim = getter() if callable(getter) else None
    return int(dim) if dim else None
