"""BM25 over the chunks held in memory: finds exact tokens that embeddings blur.

A SKU like RR-ORC-1042, a plan name or "14 days" means little to a sentence embedder, yet it
is exactly what a customer types. Codes are indexed both whole and by their parts, so
"RR-ORC-1042" and "ORC 1042" both match. Scores are divided by what a chunk of average
length that contains every query term once would score (the sum of the terms' idf), giving a
0..1 value that means the same for every query ("how much of the query's rare words does this
chunk contain"), so it can be fused with cosine similarity and compared with a threshold.

The index is immutable: the knowledge base builds a new one and swaps it in, so a search
always reads one consistent version of the corpus.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

K1 = 1.2
B = 0.75

_TOKEN = re.compile(r"[a-z0-9]+(?:[-_./][a-z0-9]+)*")
_PART = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves s t don""".split()
)


def _normalize(word: str) -> str:
    """A light plural/suffix fold so "orchids" matches "orchid" without a stemmer's surprises."""
    if word.isdigit() or len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        whole = match.group(0).strip("-_./")
        parts = _PART.findall(whole)
        if len(parts) > 1:
            tokens.append(whole)  # the exact code, as written
        for part in parts:
            if part not in STOPWORDS:
                tokens.append(_normalize(part))
    return tokens


class Vocabulary:
    """Token -> column id; only grows, so token ids stored with chunks stay valid across rebuilds."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def encode(self, tokens: Iterable[str], *, add: bool) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(tokens)
        ids: list[int] = []
        tfs: list[int] = []
        for token, count in counts.items():
            index = self._ids.get(token)
            if index is None:
                if not add:
                    continue
                index = self._ids[token] = len(self._ids)
            ids.append(index)
            tfs.append(count)
        return np.asarray(ids, dtype=np.int64), np.asarray(tfs, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)


@dataclass(frozen=True)
class TermCounts:
    """One chunk's bag of words as vocabulary ids, computed once when the chunk is indexed."""

    ids: np.ndarray
    tfs: np.ndarray

    @property
    def length(self) -> float:
        return float(self.tfs.sum())


class BM25Index:
    """Rows are chunks in `order`; `scores(query)` returns a 0..1 array aligned with those rows."""

    def __init__(self, vocabulary: Vocabulary, rows: Sequence[TermCounts]) -> None:
        self.vocabulary = vocabulary
        self.size = len(rows)
        width = max(len(vocabulary), 1)
        if not rows:
            self._matrix = sparse.csc_matrix((0, width), dtype=np.float32)
            self._idf = np.zeros(width, dtype=np.float32)
            return
        lengths = np.fromiter((r.length for r in rows), dtype=np.float32, count=len(rows))
        avg_length = float(lengths.mean()) or 1.0
        row_index = np.repeat(np.arange(len(rows)), [len(r.ids) for r in rows])
        col_index = np.concatenate([r.ids for r in rows])
        tf = np.concatenate([r.tfs for r in rows])
        doc_freq = np.bincount(col_index, minlength=width).astype(np.float32)
        self._idf = np.log1p((len(rows) - doc_freq + 0.5) / (doc_freq + 0.5)).astype(np.float32)
        norm = K1 * (1.0 - B + B * lengths[row_index] / avg_length)
        weight = self._idf[col_index] * tf * (K1 + 1.0) / (tf + norm)
        self._matrix = sparse.csc_matrix(
            (weight, (row_index, col_index)), shape=(len(rows), width), dtype=np.float32
        )

    def scores(self, query: str) -> np.ndarray:
        """Relevance of every row in 0..1: the share of the query's idf mass the row matches."""
        if self.size == 0:
            return np.zeros(0, dtype=np.float32)
        ids, _ = self.vocabulary.encode(tokenize(query), add=False)
        ids = ids[ids < self._matrix.shape[1]]
        all_terms = {t for t in tokenize(query)}
        if not all_terms:
            return np.zeros(self.size, dtype=np.float32)
        # Unknown query words still count in the maximum: a query half made of words the
        # corpus never uses is, at best, half answered by it.
        unknown = len(all_terms) - len(ids)
        known_idf = self._idf[ids] if len(ids) else np.zeros(0, dtype=np.float32)
        unseen_idf = math.log1p((self.size + 0.5) / 0.5)
        best_possible = float(known_idf.sum()) + unknown * unseen_idf
        if len(ids) == 0 or best_possible <= 0:
            return np.zeros(self.size, dtype=np.float32)
        raw = np.asarray(self._matrix[:, ids].sum(axis=1)).ravel()
        return np.clip(raw / best_possible, 0.0, 1.0).astype(np.float32)
