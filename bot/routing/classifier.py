"""The router's numbers: a topic classifier mapped to routes, then a calibrator.

Stage 1 scores topics two ways and averages them: a logistic regression over topics (good at
broad topics) and a similarity-weighted vote of the nearest labelled examples (good at staff
corrections: a corrected question that comes back verbatim finds itself at similarity 1.0).
Topic probabilities are summed per route. Stage 2, a small multinomial logistic regression fit on
out-of-fold stage-1 outputs plus the knowledge-base and domain signals, turns that into
calibrated route probabilities, so thresholds in config mean what they say.

Serving is plain numpy; the artifact is `.npz` arrays (loaded with `allow_pickle=False`) plus a
JSON file, so a running service never unpickles a file from disk.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.atomic import atomic_write_bytes, atomic_write_json
from bot.config import ROUTES
from bot.errors import BotError

log = logging.getLogger(__name__)

ARRAYS_FILE = "router.npz"
META_FILE = "router.json"
FORMAT = "supportbot-router/1"
EPS = 1e-4

# Signals beside the embedding, in the order the calibrator sees them.
KB_SIGNALS = ("kb_best_score", "kb_score_margin")
BASE_SIGNALS = ("nearest_similarity", "domain_similarity")
TEXT_SIGNALS = ("question_share",)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ASKS = re.compile(
    r"^\W*(?:can|could|do|does|did|is|are|was|will|would|how|what|when|where|which|who|why|should|may|"
    r"have|has|am)\b", re.I)


def text_signals(texts: list[str]) -> dict[str, np.ndarray]:
    """The share of a message's sentences that ask something. Policy questions ask ("Can I
    return a pot?"); what needs a person is mostly told ("My order came crushed."), and the
    embedding of the words alone does not separate "can I return it?" from "I want to return
    it, it arrived dead"."""
    shares = []
    for text in texts:
        sentences = [s for s in _SENTENCE_END.split(text.strip()) if s.strip()] or [text]
        asking = sum(1 for s in sentences if s.rstrip().endswith("?") or _ASKS.search(s))
        shares.append(asking / len(sentences))
    return {"question_share": np.array(shares, dtype=np.float64)}


class RouterFileError(BotError):
    """A saved router cannot be used (missing, corrupt, or built for another embedder)."""


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def scope_guard(
    routes: np.ndarray, nearest: np.ndarray, out_of_scope: float, in_scope: float
) -> tuple[np.ndarray, np.ndarray]:
    """Move probability to `escalate` for questions unlike every labelled example.

    The calibrator only ever saw in-scope questions, so "What's the capital of France?" can get
    a confident route it has no business getting (measured: nearest-example similarity 0.17-0.40
    for off-topic questions, 0.45-0.81 for new in-scope ones on the demo seed). At or above
    `in_scope` nothing changes; at or below `out_of_scope` the question escalates; linear between.
    Returns the adjusted probabilities and the trust given to the topics (0..1).
    """
    trust = np.clip((nearest - out_of_scope) / max(in_scope - out_of_scope, 1e-6), 0.0, 1.0)
    escalate = np.zeros_like(routes)
    escalate[:, ROUTES.index("escalate")] = 1.0
    return trust[:, None] * routes + (1.0 - trust[:, None]) * escalate, trust


@dataclass
class Calibrator:
    """Multinomial logistic regression from stage-1 log route probabilities (+ signals)."""

    coef: np.ndarray  # (routes, features)
    intercept: np.ndarray  # (routes,)
    signals: tuple[str, ...]

    def features(self, stage1: np.ndarray, signals: dict[str, np.ndarray]) -> np.ndarray:
        return calibration_features(stage1, signals, self.signals)

    def predict(self, stage1: np.ndarray, signals: dict[str, np.ndarray]) -> np.ndarray:
        return softmax(self.features(stage1, signals) @ self.coef.T + self.intercept)


def calibration_features(
    stage1: np.ndarray, signals: dict[str, np.ndarray], names: tuple[str, ...]
) -> np.ndarray:
    """Log route probabilities, each also scaled by the nearest-example similarity (a learned
    temperature: far from every example, the calibrator can soften the same log odds), then the
    raw signals."""
    logp = np.log(np.clip(stage1, EPS, 1.0))
    cols = [logp]
    if "nearest_similarity" in names:
        cols.append(logp * signals["nearest_similarity"][:, None])
    cols.extend(signals[name][:, None] for name in names)
    return np.hstack(cols)


@dataclass
class TopicRouterModel:
    topics: list[str]
    topic_routes: list[str]
    lr_coef: np.ndarray  # (topics, dim)
    lr_intercept: np.ndarray  # (topics,)
    example_embeddings: np.ndarray  # (examples, dim), unit length
    example_topics: np.ndarray  # (examples,) topic index
    example_weights: np.ndarray  # (examples,)
    example_texts: list[str]
    k: int
    knn_temperature: float
    lr_weight: float
    calibrators: dict[str, Calibrator] = field(default_factory=dict)  # "with_kb", "without_kb"
    domain_embeddings: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.example_embeddings.shape[1])

    @property
    def route_matrix(self) -> np.ndarray:
        """(topics, routes) one-hot: topic probabilities @ this = route probabilities."""
        matrix = np.zeros((len(self.topics), len(ROUTES)))
        for i, route in enumerate(self.topic_routes):
            matrix[i, ROUTES.index(route)] = 1.0
        return matrix

    # --- stage 1 ------------------------------------------------------------------------------

    def knn(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Topic vote of the k nearest examples: (topic probs, neighbour indices, similarities)."""
        sims = embeddings @ self.example_embeddings.T
        k = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        order = np.argsort(-top, axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        top = np.take_along_axis(top, order, axis=1)
        votes = softmax(top / self.knn_temperature) * self.example_weights[idx]
        probs = np.zeros((len(embeddings), len(self.topics)))
        rows = np.repeat(np.arange(len(embeddings)), k)
        np.add.at(probs, (rows, self.example_topics[idx].ravel()), votes.ravel())
        probs /= probs.sum(axis=1, keepdims=True)
        return probs, idx, top

    def topic_probabilities(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lr = softmax(embeddings @ self.lr_coef.T + self.lr_intercept)
        knn, idx, sims = self.knn(embeddings)
        return self.lr_weight * lr + (1.0 - self.lr_weight) * knn, idx, sims

    def base_signals(self, embeddings: np.ndarray, nearest: np.ndarray) -> dict[str, np.ndarray]:
        """Similarity to the nearest labelled example (low: unlike anything the router was
        taught) and to the domain model's training questions, when this version has them."""
        signals = {"nearest_similarity": nearest}
        if self.domain_embeddings is not None and len(self.domain_embeddings):
            signals["domain_similarity"] = (embeddings @ self.domain_embeddings.T).max(axis=1)
        return signals

    # --- full prediction ----------------------------------------------------------------------

    def predict(
        self, embeddings: np.ndarray, texts: list[str], kb_signals: dict[str, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Route probabilities (calibrated), topic probabilities, neighbours and signals, for
        the questions `texts` whose vectors are `embeddings`."""
        topic_p, idx, sims = self.topic_probabilities(embeddings)
        stage1 = topic_p @ self.route_matrix
        signals = self.base_signals(embeddings, sims[:, 0])
        signals.update(text_signals(texts))
        calibrator = self.calibrators.get("without_kb")
        if kb_signals is not None and "with_kb" in self.calibrators:
            signals.update(kb_signals)
            calibrator = self.calibrators["with_kb"]
        elif kb_signals is not None:
            signals.update(kb_signals)  # shown in explain, not used: this version never learnt them
        routes = calibrator.predict(stage1, signals) if calibrator is not None else stage1
        return {
            "routes": routes,
            "stage1": stage1,
            "topics": topic_p,
            "neighbours": idx,
            "neighbour_similarities": sims,
            "signals": signals,
        }

    # --- persistence --------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        import io

        arrays: dict[str, np.ndarray] = {
            "lr_coef": self.lr_coef.astype(np.float32),
            "lr_intercept": self.lr_intercept.astype(np.float32),
            "example_embeddings": self.example_embeddings.astype(np.float32),
            "example_topics": self.example_topics.astype(np.int32),
            "example_weights": self.example_weights.astype(np.float32),
        }
        if self.domain_embeddings is not None:
            arrays["domain_embeddings"] = self.domain_embeddings.astype(np.float32)
        for name, cal in self.calibrators.items():
            arrays[f"cal_{name}_coef"] = cal.coef.astype(np.float64)
            arrays[f"cal_{name}_intercept"] = cal.intercept.astype(np.float64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(folder / ARRAYS_FILE, buffer.getvalue())
        atomic_write_json(
            folder / META_FILE,
            {
                "format": FORMAT,
                "topics": self.topics,
                "topic_routes": self.topic_routes,
                "example_texts": self.example_texts,
                "k": self.k,
                "knn_temperature": self.knn_temperature,
                "lr_weight": self.lr_weight,
                "calibrators": {name: list(cal.signals) for name, cal in self.calibrators.items()},
                "metadata": self.metadata,
            },
        )

    @classmethod
    def load(cls, folder: Path, expected_dim: int | None = None) -> TopicRouterModel:
        """Load and check a saved router; any problem is a `RouterFileError` naming the file."""
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            with np.load(folder / ARRAYS_FILE, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except FileNotFoundError as exc:
            raise RouterFileError(f"{folder}: missing {Path(exc.filename or '').name}") from None
        except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
            raise RouterFileError(f"{folder}: unreadable router file ({exc})") from None
        try:
            if meta.get("format") != FORMAT:
                raise RouterFileError(f"{folder}: format {meta.get('format')!r}, expected {FORMAT!r}")
            calibrators = {
                name: Calibrator(arrays[f"cal_{name}_coef"], arrays[f"cal_{name}_intercept"], tuple(sig))
                for name, sig in meta["calibrators"].items()
            }
            model = cls(
                topics=list(meta["topics"]),
                topic_routes=list(meta["topic_routes"]),
                lr_coef=arrays["lr_coef"],
                lr_intercept=arrays["lr_intercept"],
                example_embeddings=arrays["example_embeddings"],
                example_topics=arrays["example_topics"],
                example_weights=arrays["example_weights"],
                example_texts=list(meta["example_texts"]),
                k=int(meta["k"]),
                knn_temperature=float(meta["knn_temperature"]),
                lr_weight=float(meta["lr_weight"]),
                calibrators=calibrators,
                domain_embeddings=arrays.get("domain_embeddings"),
                metadata=dict(meta.get("metadata", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RouterFileError(f"{folder}: incomplete router file ({exc!r})") from None
        model.check(folder, expected_dim)
        return model

    def check(self, folder: Path, expected_dim: int | None) -> None:
        n_topics, n_examples = len(self.topics), len(self.example_texts)
        problems = []
        if set(self.topic_routes) - set(ROUTES) or len(self.topic_routes) != n_topics:
            problems.append("topic routes do not match the topics")
        if self.lr_coef.shape != (n_topics, self.dim) or self.lr_intercept.shape != (n_topics,):
            problems.append("classifier shape does not match the topics")
        if self.example_topics.shape != (n_examples,) or self.example_weights.shape != (n_examples,):
            problems.append("examples do not match their labels")
        elif n_examples and (self.example_topics.min() < 0 or self.example_topics.max() >= n_topics):
            problems.append("an example points at an unknown topic")
        if expected_dim is not None and self.dim != expected_dim:
            problems.append(f"built for {self.dim}-dim embeddings, the embedder gives {expected_dim}")
        if "without_kb" not in self.calibrators:
            problems.append("no calibrator")
        if self.k < 1 or self.knn_temperature <= 0 or not 0.0 <= self.lr_weight <= 1.0:
            problems.append("invalid hyperparameters")
        arrays = [self.lr_coef, self.lr_intercept, self.example_embeddings]
        if any(not np.all(np.isfinite(a)) for a in arrays):
            problems.append("non-finite numbers")
        if problems:
            raise RouterFileError(f"{folder}: " + "; ".join(problems))
