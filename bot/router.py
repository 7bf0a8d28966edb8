"""The router: sends each question to the domain model, to retrieval, or to a human.

A wrong route gives a confident wrong answer, so the router reports *calibrated* probabilities
and the reason (the topic that matched, the knowledge-base score) with every decision; the
pipeline applies the per-route thresholds from config. The running bot serves the promoted
router version from `<state_dir>/routers`, checks for a newer one at most every
`router.reload_interval_s`, and swaps it in without a restart. With no trained version yet
(a fresh install), or when the saved file is unusable, it routes zero-shot: nearest topic
centroid over the seed file's examples.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.config import ROUTES, Route, RouterConfig, Settings
from bot.indexing.embedding import embed, embedding_dimension
from bot.interfaces import RouteDecision
from bot.query_encoder import QueryEncoder
from bot.registry import ArtifactRegistry, router_registry
from bot.routing.classifier import RouterFileError, TopicRouterModel, scope_guard
from bot.routing.seed import fingerprint, load_seed_topics, seed_examples

log = logging.getLogger(__name__)

ZERO_SHOT_PREFIX = "zero-shot"


def build_zero_shot_model(config: RouterConfig, embedder: Any) -> TopicRouterModel:
    """Nearest topic centroid over the seed examples: a centroid classifier is a linear model
    (weights = centroid / temperature), so it runs through the same code as a trained router,
    with the logistic part only and no calibrator."""
    topics = load_seed_topics(config.seed_file)
    examples = seed_examples(topics)
    vectors = embed(embedder, [e.text for e in examples])
    topic_ids = np.array([[t.name for t in topics].index(e.topic) for e in examples])
    centroids = np.stack([vectors[topic_ids == i].mean(axis=0) for i in range(len(topics))])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return TopicRouterModel(
        topics=[t.name for t in topics],
        topic_routes=[t.route for t in topics],
        lr_coef=centroids / config.zero_shot_temperature,
        lr_intercept=np.zeros(len(topics)),
        example_embeddings=vectors,
        example_topics=topic_ids,
        example_weights=np.ones(len(examples), dtype=np.float32),
        example_texts=[e.text for e in examples],
        k=config.k,
        knn_temperature=config.knn_temperature,
        lr_weight=1.0,
        metadata={"zero_shot": True, "seed_fingerprint": fingerprint(examples)},
    )


@dataclass(frozen=True)
class _Serving:
    model: TopicRouterModel
    version: str  # "v0003" or "zero-shot:<seed fingerprint>"
    note: str = ""  # why this model serves, when it is a fallback


class TopicRouter:
    """Routes with the promoted router version, hot-reloading it; zero-shot until one exists."""

    def __init__(
        self,
        config: RouterConfig,
        registry: ArtifactRegistry,
        *,
        embedder: Any,
        knowledge: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.knowledge = knowledge
        self.registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        self._warm_lock = threading.Lock()
        self._query_encoder: QueryEncoder | None = None
        self._zero_shot: _Serving | None = None
        self._kb_warned = False
        self._seen_version: str | None = None
        self._last_check = clock()
        self._loaded: _Serving | None = None

    # --- loading and hot reload ----------------------------------------------------------------

    def warm_up(self) -> None:
        """Copy (and quantize) the question encoder and load the promoted version, or build the
        zero-shot router; the first decision does it when nobody called this first."""
        with self._warm_lock:
            if self._query_encoder is None:
                self._query_encoder = QueryEncoder(self.embedder, self.config.query_precision)
            if self._loaded is None:
                self._loaded = self._load_initial()
                self._last_check = self._clock()

    @property
    def query_encoder(self) -> QueryEncoder:
        if self._query_encoder is None:
            self.warm_up()
        assert self._query_encoder is not None
        return self._query_encoder

    @property
    def _serving(self) -> _Serving:
        if self._loaded is None:
            self.warm_up()
        assert self._loaded is not None
        return self._loaded

    def _load_initial(self) -> _Serving:
        version = self.registry.current_version()
        self._seen_version = version
        if version is None:
            log.info("no trained router yet; routing zero-shot over %s", self.config.seed_file)
            return self._zero_shot_serving("no trained router yet")
        try:
            return self._load_version(version)
        except RouterFileError as exc:
            log.warning("router %s is unusable (%s); routing zero-shot over the seed file "
                        "until a new version is trained", version, exc)
            return self._zero_shot_serving(f"router {version} unusable")

    def _load_version(self, version: str) -> _Serving:
        info = self.registry.get(version)
        model = TopicRouterModel.load(info.path, expected_dim=embedding_dimension(self.embedder))
        log.info("router %s loaded (%d topics, %d examples)", version, len(model.topics),
                 len(model.example_texts))
        return _Serving(model, version)

    def _zero_shot_serving(self, note: str) -> _Serving:
        if self._zero_shot is None:
            model = build_zero_shot_model(self.config, self.embedder)
            version = f"{ZERO_SHOT_PREFIX}:{model.metadata['seed_fingerprint']}"
            self._zero_shot = _Serving(model, version)
        return _Serving(self._zero_shot.model, self._zero_shot.version, note)

    def refresh(self, force: bool = False) -> bool:
        """Swap in a newly promoted version; True when the serving router changed.

        Called on every decision but reads the registry pointer at most every
        `router.reload_interval_s`. The new version is fully loaded before the swap, so
        concurrent questions see the old router or the new one, never a half-loaded one; a
        version that fails to load is reported once and the current router keeps serving.
        """
        if self._loaded is None:
            self.warm_up()
        now = self._clock()
        if not force and now - self._last_check < self.config.reload_interval_s:
            return False
        if not self._lock.acquire(blocking=force):
            return False  # another thread is already checking
        try:
            self._last_check = now
            version = self.registry.current_version()
            if version == self._seen_version:
                return False
            self._seen_version = version
            if version is None:  # rolled back past the first version
                log.warning("no router version is promoted any more; routing zero-shot")
                self._loaded = self._zero_shot_serving("no promoted router version")
                return True
            try:
                serving = self._load_version(version)
            except RouterFileError as exc:
                log.warning("router %s is unusable (%s); still serving %s", version, exc,
                            self._serving.version)
                return False
            self._loaded = serving
            log.info("router hot-reloaded: now serving %s", version)
            return True
        finally:
            self._lock.release()

    @property
    def version(self) -> str:
        return self._serving.version

    @property
    def model(self) -> TopicRouterModel:
        return self._serving.model

    # --- routing -----------------------------------------------------------------------------

    def _kb_signals(self, question: str) -> dict[str, np.ndarray] | None:
        if self.knowledge is None or not self.config.use_kb_signals:
            return None
        try:
            hits = self.knowledge.search(question, k=2)
        except Exception as exc:  # the KB is a helper signal; routing must go on without it
            if not self._kb_warned:
                log.warning("knowledge search failed (%s); routing without KB signals", exc)
                self._kb_warned = True
            return None
        return {name: np.array([value]) for name, value in kb_signal_values(hits).items()}

    def _analyse(self, question: str) -> tuple[_Serving, dict[str, Any], np.ndarray]:
        self.refresh()
        serving = self._serving  # one read: a concurrent swap cannot mix two versions
        vector = self.query_encoder.encode([question])
        result = serving.model.predict(vector, [question], self._kb_signals(question))
        cfg = self.config
        result["calibrated"] = result["routes"]
        result["routes"], result["scope_trust"] = scope_guard(
            result["routes"], result["signals"]["nearest_similarity"],
            cfg.out_of_scope_similarity, cfg.in_scope_similarity,
        )
        return serving, result, vector[0]

    def decide(self, question: str) -> RouteDecision:
        serving, result, _ = self._analyse(question)
        return self._decision(serving, result)

    def _decision(self, serving: _Serving, result: dict[str, Any]) -> RouteDecision:
        model = serving.model
        probs = result["routes"][0]
        route_index = int(np.argmax(probs))
        route: Route = ROUTES[route_index]  # type: ignore[assignment]
        topic_p = result["topics"][0]
        in_route = [i for i, r in enumerate(model.topic_routes) if r == route]
        best_topic = max(in_route, key=lambda i: topic_p[i]) if in_route else int(np.argmax(topic_p))
        signals = {name: round(float(values[0]), 4) for name, values in result["signals"].items()}
        trust = float(result["scope_trust"][0])
        nearest = float(result["signals"]["nearest_similarity"][0])
        if route == "escalate" and trust < 0.5:
            reason = (f"out of scope: nearest labelled question has similarity {nearest:.2f} "
                      f"(escalates at or below {self.config.out_of_scope_similarity:.2f}) "
                      f"p={probs[route_index]:.2f}")
        else:
            reason = f"topic '{model.topics[best_topic]}' ({route}) p={probs[route_index]:.2f}"
            if trust < 1.0:
                reason += f"; partly out of scope (nearest similarity {nearest:.2f})"
        if "kb_best_score" in signals:
            reason += f"; best KB score {signals['kb_best_score']:.2f}"
        if serving.note:
            reason += f"; zero-shot ({serving.note})"
        return RouteDecision(
            route=route,
            confidence=float(probs[route_index]),
            reason=reason,
            probabilities={r: round(float(p), 4) for r, p in zip(ROUTES, probs, strict=True)},
            signals=signals,
            router_version=serving.version,
        )

    def explain(self, question: str, top: int = 5) -> dict[str, Any]:
        """Everything that decided: route probabilities, top topics with their similarity,
        the nearest labelled examples and the signals, for staff and `router explain`."""
        serving, result, vector = self._analyse(question)
        decision = self._decision(serving, result)
        model = serving.model
        topic_p = result["topics"][0]
        sims = model.example_embeddings @ vector
        topics = []
        for i in np.argsort(-topic_p)[:top]:
            mask = model.example_topics == i
            topics.append({
                "topic": model.topics[i],
                "route": model.topic_routes[i],
                "probability": round(float(topic_p[i]), 4),
                "similarity": round(float(sims[mask].max()), 4) if mask.any() else 0.0,
            })
        neighbours = [
            {
                "text": model.example_texts[j],
                "topic": model.topics[model.example_topics[j]],
                "route": model.topic_routes[model.example_topics[j]],
                "similarity": round(float(s), 4),
            }
            for j, s in zip(result["neighbours"][0][:top], result["neighbour_similarities"][0][:top],
                            strict=True)
        ]
        calibrated = result["calibrated"][0]
        return {
            "question": question,
            "route": decision.route,
            "confidence": round(decision.confidence, 4),
            "reason": decision.reason,
            "probabilities": decision.probabilities,
            "topic_probabilities_by_route": {
                r: round(float(p), 4) for r, p in zip(ROUTES, result["stage1"][0], strict=True)
            },
            "calibrated_before_scope_guard": {
                r: round(float(p), 4) for r, p in zip(ROUTES, calibrated, strict=True)
            },
            "scope_trust": round(float(result["scope_trust"][0]), 4),
            "thresholds": dict(self.config.thresholds),
            "top_topics": topics,
            "nearest_examples": neighbours,
            "signals": decision.signals,
            "version": serving.version,
            "zero_shot": bool(serving.model.metadata.get("zero_shot")),
            "note": serving.note,
        }


def kb_signal_values(hits: list[Any]) -> dict[str, float]:
    """Best relevance and its lead over the runner-up: a clear policy match has both high."""
    scores = sorted((float(getattr(h, "score", 0.0)) for h in hits or []), reverse=True)
    best = scores[0] if scores else 0.0
    second = scores[1] if len(scores) > 1 else 0.0
    return {"kb_best_score": best, "kb_score_margin": best - second}


def build_router(settings: Settings, *, embedder: Any, knowledge: Any = None, store: Any = None) -> TopicRouter:
    """The runtime's router (bot.factory). `store` is accepted for symmetry with training:
    serving reads labels only through trained versions."""
    return TopicRouter(settings.router, router_registry(settings), embedder=embedder, knowledge=knowledge)
