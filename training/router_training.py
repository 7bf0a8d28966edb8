"""Retrain the router from the seed file plus every staff label that names the correct route.

`supportbot router train` and the training loop (after each fine-tune) call `train_router`. It
reports cross-validated figures computed on examples the model never saw (both stages), saves
the new version through the artifact registry (staged, then renamed into place) and promotes it,
so the running bot hot-reloads it within seconds.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.config import ROUTES, Settings
from bot.errors import ConfigError
from bot.indexing.embedding import embed
from bot.memory.matching import canonical_question
from bot.registry import router_registry
from bot.router import kb_signal_values
from bot.routing.fit import FitParams, fit_router
from bot.routing.seed import (
    STAFF_TOPIC_PREFIX,
    Example,
    Topic,
    load_domain_questions,
    load_seed_topics,
    seed_examples,
)

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RouterTrainingReport:
    version: str
    promoted: bool
    cv_accuracy: float
    cv_macro_f1: float
    confusion: list[list[int]]  # rows: true route, columns: predicted route, in `routes` order
    routes: list[str]
    per_route_f1: dict[str, float]
    examples_by_source: dict[str, int]
    examples_by_route: dict[str, int]
    n_topics: int
    used_kb_signals: bool
    used_domain_signal: bool
    duration_s: float
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_params(settings: Settings) -> FitParams:
    cfg = settings.router
    return FitParams(
        C=cfg.classifier_c,
        k=cfg.k,
        knn_temperature=cfg.knn_temperature,
        lr_weight=cfg.classifier_weight,
        calibration_folds=cfg.calibration_folds,
    )


def staff_examples(store: Any, weight: float) -> list[Example]:
    """Staff labels that name the route that should have answered (latest label per turn)."""
    if store is None:
        return []
    out = []
    for turn in store.labeled_turns():
        if turn.correct_route in ROUTES and turn.learn_question.strip():  # a follow-up as it was routed
            out.append(Example(turn.learn_question.strip(), "", turn.correct_route, "staff", weight))
    return out


def assign_staff_topics(
    staff: list[Example],
    staff_vectors: np.ndarray,
    topics: list[Topic],
    seed_vectors: np.ndarray,
    seed: list[Example],
    min_similarity: float,
) -> list[Example]:
    """Put each staff-labelled question in the nearest topic of its route, so topics stay the
    unit the router learns and explains; a question unlike every topic of its route gets a
    topic of its own, `staff:<route>`, instead of blurring one."""
    centroids: dict[str, np.ndarray] = {}
    for topic in topics:
        rows = [i for i, e in enumerate(seed) if e.topic == topic.name]
        if rows:
            c = seed_vectors[rows].mean(axis=0)
            centroids[topic.name] = c / np.linalg.norm(c)
    assigned = []
    for example, vector in zip(staff, staff_vectors, strict=True):
        candidates = [(float(centroids[t.name] @ vector), t.name) for t in topics
                      if t.route == example.route and t.name in centroids]
        best_sim, best_topic = max(candidates, default=(-1.0, ""))
        name = best_topic if best_sim >= min_similarity else f"{STAFF_TOPIC_PREFIX}{example.route}"
        assigned.append(Example(example.text, name, example.route, example.source, example.weight))
    return assigned


def train_router(
    settings: Settings,
    *,
    embedder: Any,
    store: Any,
    promote: bool = True,
    knowledge: Any = None,
    progress: Progress | None = None,
) -> RouterTrainingReport:
    """Train, cross-validate, save and (by default) promote a new router version.

    `knowledge` (optional) adds the knowledge-base signals; without it the version routes on
    the question's embedding, its topics and the domain-similarity signal only.
    """
    started = time.perf_counter()
    say = progress or (lambda message: log.info("%s", message))
    cfg = settings.router
    warnings: list[str] = []
    topics = load_seed_topics(settings.router.seed_file)
    seed = seed_examples(topics)
    staff = staff_examples(store, cfg.staff_weight)
    say(f"embedding {len(seed)} seed and {len(staff)} staff-labelled questions")
    seed_vectors = embed(embedder, [e.text for e in seed])
    staff_vectors = embed(embedder, [e.text for e in staff]) if staff else np.zeros((0, seed_vectors.shape[1]))
    staff = assign_staff_topics(staff, staff_vectors, topics, seed_vectors, seed, cfg.staff_topic_min_similarity)
    # A staff label overrides a seed example with the same question and another route.
    staff_routes = {canonical_question(e.text): e.route for e in staff}
    keep = [i for i, e in enumerate(seed) if staff_routes.get(canonical_question(e.text), e.route) == e.route]
    if len(keep) < len(seed):
        warnings.append(f"{len(seed) - len(keep)} seed example(s) overridden by staff labels with another route")
    examples = [seed[i] for i in keep] + staff
    vectors = np.vstack([seed_vectors[keep], staff_vectors])
    topic_names = [t.name for t in topics]
    topic_routes = [t.route for t in topics]
    for example in staff:
        if example.topic not in topic_names:
            topic_names.append(example.topic)
            topic_routes.append(example.route)
    topic_ids = np.array([topic_names.index(e.topic) for e in examples])
    if len(set(topic_ids.tolist())) < 2:
        raise ConfigError(f"{settings.router.seed_file}: the router needs at least two topics to "
                          "learn from; add topics (one per kind of question) to the seed file")
    weights = np.array([e.weight for e in examples], dtype=np.float64)

    kb_signals = None
    if knowledge is not None and cfg.use_kb_signals:
        say("reading knowledge-base signals")
        kb_signals = knowledge_signals(knowledge, [e.text for e in examples], warnings)
    domain_questions = load_domain_questions(settings.training.seed_dataset, cfg.domain_signal_max_questions)
    domain_vectors = embed(embedder, domain_questions) if domain_questions else None
    if domain_vectors is None:
        warnings.append(f"no domain questions in {settings.training.seed_dataset}: domain-similarity signal off")

    say(f"fitting {len(topic_names)} topics with {cfg.calibration_folds}-fold calibration")
    result = fit_router(
        vectors, topic_ids, weights, topic_names, topic_routes, [e.text for e in examples],
        fit_params(settings), kb_signals=kb_signals, domain_embeddings=domain_vectors,
    )
    metrics = route_metrics(np.array([ROUTES.index(e.route) for e in examples]), result.oof_routes.argmax(axis=1))
    by_source = dict(Counter(e.source for e in examples))
    by_route = {r: sum(1 for e in examples if e.route == r) for r in ROUTES}
    result.model.metadata = {
        "cv_accuracy": metrics["accuracy"],
        "cv_macro_f1": metrics["macro_f1"],
        "examples_by_source": by_source,
        "seed_file": str(settings.router.seed_file),
        "embedding_dim": int(vectors.shape[1]),
    }
    registry = router_registry(settings)
    with tempfile.TemporaryDirectory(prefix="router-") as tmp:
        result.model.save(Path(tmp))
        info = registry.add(Path(tmp), {
            "kind": "router", "cv_accuracy": metrics["accuracy"], "cv_macro_f1": metrics["macro_f1"],
            "examples_by_source": by_source, "n_topics": len(topic_names),
        })
    if promote:
        registry.promote(info.version)
    report = RouterTrainingReport(
        version=info.version,
        promoted=promote,
        cv_accuracy=metrics["accuracy"],
        cv_macro_f1=metrics["macro_f1"],
        confusion=metrics["confusion"],
        routes=list(ROUTES),
        per_route_f1=metrics["per_route_f1"],
        examples_by_source=by_source,
        examples_by_route=by_route,
        n_topics=len(topic_names),
        used_kb_signals=kb_signals is not None,
        used_domain_signal=domain_vectors is not None,
        duration_s=round(time.perf_counter() - started, 2),
        warnings=warnings,
    )
    log.info("router %s trained: cv accuracy %.3f, macro-F1 %.3f, %s examples, promoted=%s",
             info.version, report.cv_accuracy, report.cv_macro_f1, by_source, promote)
    return report


def knowledge_signals(knowledge: Any, texts: list[str], warnings: list[str]) -> dict[str, np.ndarray] | None:
    """The serving router's KB signals for every training question, searched as one batch."""
    try:
        rows = [kb_signal_values(hits) for hits in knowledge.search_many(texts, k=2)]
    except Exception as exc:  # an unavailable KB only removes its signals from this version
        warnings.append(f"knowledge search failed ({exc}); trained without KB signals")
        return None
    return {name: np.array([row[name] for row in rows]) for name in rows[0]} if rows else None


def route_metrics(true: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 over the routes present, per-route F1 and the confusion matrix."""
    confusion = np.zeros((len(ROUTES), len(ROUTES)), dtype=int)
    np.add.at(confusion, (true, predicted), 1)
    f1s = {}
    for i, route in enumerate(ROUTES):
        tp = confusion[i, i]
        support, predicted_n = confusion[i].sum(), confusion[:, i].sum()
        if support == 0:
            continue
        precision = tp / predicted_n if predicted_n else 0.0
        recall = tp / support
        f1s[route] = round(float(2 * precision * recall / (precision + recall)) if tp else 0.0, 4)
    return {
        "accuracy": round(float(np.trace(confusion) / max(1, confusion.sum())), 4),
        "macro_f1": round(float(np.mean(list(f1s.values()))) if f1s else 0.0, 4),
        "per_route_f1": f1s,
        "confusion": confusion.tolist(),
    }
