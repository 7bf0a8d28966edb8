"""Fitting the router from embedded examples: shared by `router train` and the benchmark.

Everything here works on arrays (embeddings, topic ids, weights) so the benchmark measures
exactly the code that `supportbot router train` runs. Calibration is fit on out-of-fold
predictions only: a model scored on its own training examples is always sure of itself.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.config import ROUTES
from bot.routing.classifier import (
    BASE_SIGNALS,
    KB_SIGNALS,
    TEXT_SIGNALS,
    Calibrator,
    TopicRouterModel,
    calibration_features,
    text_signals,
)

log = logging.getLogger(__name__)

MISSING_CLASS_LOGIT = -30.0


@dataclass(frozen=True)
class FitParams:
    """Hyperparameters; defaults were chosen on a development split that no reported figure uses."""

    C: float = 20.0
    k: int = 10
    knn_temperature: float = 0.05
    lr_weight: float = 0.5
    calibration_folds: int = 5
    calibration_C: float = 1.0
    seed: int = 0


@dataclass
class FitResult:
    model: TopicRouterModel
    oof_routes: np.ndarray  # (examples, routes): fully out-of-fold calibrated probabilities
    oof_stage1: np.ndarray  # (examples, routes): out-of-fold stage-1 probabilities


def _logistic_regression(C: float, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, random_state=seed)


def _fit_single_threaded(model: Any, *args: Any, **kwargs: Any) -> Any:
    """These fits are small; on a busy 2-core machine a multi-threaded BLAS spent 13x longer
    (measured: 13 s against 1 s for 8,000 examples x 77 topics) fighting other processes."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on tiny folds
        return model.fit(*args, **kwargs)


def fit_stage1(
    embeddings: np.ndarray,
    topic_ids: np.ndarray,
    weights: np.ndarray,
    topics: list[str],
    topic_routes: list[str],
    texts: list[str],
    params: FitParams,
) -> TopicRouterModel:
    """Topic classifier + nearest-example index, without calibration."""
    n_topics = len(topics)
    dim = embeddings.shape[1]
    coef = np.zeros((n_topics, dim))
    intercept = np.full(n_topics, MISSING_CLASS_LOGIT)
    present = np.unique(topic_ids)
    if len(present) == 1:  # one topic: nothing to separate, it always wins
        intercept[present[0]] = 0.0
    else:
        lr = _fit_single_threaded(
            _logistic_regression(params.C, params.seed), embeddings, topic_ids, sample_weight=weights
        )
        coef[lr.classes_] = lr.coef_
        intercept[lr.classes_] = lr.intercept_
    return TopicRouterModel(
        topics=list(topics),
        topic_routes=list(topic_routes),
        lr_coef=coef,
        lr_intercept=intercept,
        example_embeddings=embeddings.astype(np.float32),
        example_topics=topic_ids.astype(np.int32),
        example_weights=weights.astype(np.float32),
        example_texts=list(texts),
        k=params.k,
        knn_temperature=params.knn_temperature,
        lr_weight=params.lr_weight,
    )


def make_folds(topic_ids: np.ndarray, route_ids: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Fold number per example, stratified by topic when every topic can be, else by route."""
    from sklearn.model_selection import StratifiedKFold

    _, topic_counts = np.unique(topic_ids, return_counts=True)
    _, route_counts = np.unique(route_ids, return_counts=True)
    strata = topic_ids if topic_counts.min() >= n_folds else route_ids
    n_folds = max(2, min(n_folds, int(np.bincount(strata).max())))
    folds = np.zeros(len(topic_ids), dtype=int)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class" when a route is tiny
        for fold, (_, test) in enumerate(splitter.split(np.zeros(len(strata)), strata)):
            folds[test] = fold
    return folds


def fit_calibrator(
    stage1: np.ndarray,
    signals: dict[str, np.ndarray],
    route_ids: np.ndarray,
    names: tuple[str, ...],
    params: FitParams,
) -> Calibrator:
    features = calibration_features(stage1, signals, names)
    coef = np.zeros((len(ROUTES), features.shape[1]))
    intercept = np.full(len(ROUTES), MISSING_CLASS_LOGIT)
    present = np.unique(route_ids)
    if len(present) == 1:
        intercept[present[0]] = 0.0
    else:
        lr = _fit_single_threaded(_logistic_regression(params.calibration_C, params.seed), features, route_ids)
        if len(lr.classes_) == 2:  # sklearn keeps one row for two classes: split it symmetrically
            coef[lr.classes_[1]], intercept[lr.classes_[1]] = lr.coef_[0] / 2, lr.intercept_[0] / 2
            coef[lr.classes_[0]], intercept[lr.classes_[0]] = -lr.coef_[0] / 2, -lr.intercept_[0] / 2
        else:
            coef[lr.classes_] = lr.coef_
            intercept[lr.classes_] = lr.intercept_
    return Calibrator(coef=coef, intercept=intercept, signals=names)


def fit_router(
    embeddings: np.ndarray,
    topic_ids: np.ndarray,
    weights: np.ndarray,
    topics: list[str],
    topic_routes: list[str],
    texts: list[str],
    params: FitParams = FitParams(),
    *,
    kb_signals: dict[str, np.ndarray] | None = None,
    domain_embeddings: np.ndarray | None = None,
) -> FitResult:
    """Fit stage 1 on everything and the calibrator(s) on out-of-fold stage-1 outputs."""
    if len(set(topic_ids.tolist())) < 2:
        raise ValueError("the router needs examples of at least two topics")
    route_of_topic = np.array([ROUTES.index(r) for r in topic_routes])
    route_ids = route_of_topic[topic_ids]
    folds = make_folds(topic_ids, route_ids, params.calibration_folds, params.seed)
    stage1 = np.zeros((len(texts), len(ROUTES)))
    signals: dict[str, np.ndarray] = {name: np.zeros(len(texts)) for name in BASE_SIGNALS}
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        part = fit_stage1(
            embeddings[train], topic_ids[train], weights[train], topics, topic_routes,
            [t for t, keep in zip(texts, train, strict=True) if keep], params,
        )
        part.domain_embeddings = domain_embeddings
        topic_p, _, sims = part.topic_probabilities(embeddings[test])
        stage1[test] = topic_p @ part.route_matrix
        for name, values in part.base_signals(embeddings[test], sims[:, 0]).items():
            signals[name][test] = values
    use_domain = domain_embeddings is not None and len(domain_embeddings) > 0
    signals.update(text_signals(texts))
    base_names = tuple(n for n in BASE_SIGNALS if use_domain or n != "domain_similarity") + TEXT_SIGNALS
    calibrators = {"without_kb": fit_calibrator(stage1, signals, route_ids, base_names, params)}
    full_names = base_names
    if kb_signals is not None:
        signals.update(kb_signals)
        full_names = base_names + KB_SIGNALS
        calibrators["with_kb"] = fit_calibrator(stage1, signals, route_ids, full_names, params)
    oof_routes = cross_fitted_calibration(stage1, signals, route_ids, folds, full_names, params)
    model = fit_stage1(embeddings, topic_ids, weights, topics, topic_routes, texts, params)
    model.calibrators = calibrators
    model.domain_embeddings = domain_embeddings if use_domain else None
    return FitResult(model=model, oof_routes=oof_routes, oof_stage1=stage1)


def cross_fitted_calibration(
    stage1: np.ndarray,
    signals: dict[str, np.ndarray],
    route_ids: np.ndarray,
    folds: np.ndarray,
    names: tuple[str, ...],
    params: FitParams,
) -> np.ndarray:
    """Calibrated probabilities for each example from a calibrator that never saw it, so the
    reported cross-validated accuracy covers both stages."""
    out = np.zeros_like(stage1)
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        part_signals = {k: v[train] for k, v in signals.items()}
        cal = fit_calibrator(stage1[train], part_signals, route_ids[train], names, params)
        out[test] = cal.predict(stage1[test], {k: v[test] for k, v in signals.items()})
    return out
