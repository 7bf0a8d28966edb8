"""Prometheus metrics: how the bot is doing, seen from outside.

One registry per process (`REGISTRY`), exposed wherever the bot already serves HTTP (`/metrics`
on the Slack HTTP endpoint and on the Rasa action server) and, for Socket Mode and console-less
`serve`, on `metrics.port`. Counters live and die with the process, so nothing here names a
replica: Prometheus adds `instance` when it scrapes, and dashboards `sum(rate(...))` across
replicas (docs/operations.md, docs/grafana-dashboard.json). Metrics never carry question text
or user ids, only routes, kinds, reasons and versions, so a scrape reveals nothing about a customer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST
METRICS_PATH = "/metrics"

QUESTIONS = Counter("supportbot_questions", "Questions received, by channel.", ["channel"], registry=REGISTRY)
ANSWERS = Counter(
    "supportbot_answers",
    "Answers given, by the route that answered and how (domain: verified, similar, grounded, generated).",
    ["route", "kind"], registry=REGISTRY,
)
ANSWER_SECONDS = Histogram(
    "supportbot_answer_seconds", "Time from question to answer (routing, answering, logging), by answering route.",
    ["route"], buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0), registry=REGISTRY,
)
FALLBACKS = Counter(
    "supportbot_fallbacks",
    "A route skipped: its confidence was below the threshold (low_confidence) or its answerer could not "
    "answer (unavailable: no knowledge-base match, model down, degenerate answer).",
    ["route", "reason"], registry=REGISTRY,
)
ESCALATIONS = Counter(
    "supportbot_escalations",
    "Answers handed to a person: routed there, after fallbacks, or refused input (too_long, empty).",
    ["reason"], registry=REGISTRY,
)
GUARDED = Counter(
    "supportbot_guarded_answers",
    "Model answers the guard changed: degenerate (rejected) or invented_contact (a sentence removed).",
    ["what"], registry=REGISTRY,
)
FOLLOW_UPS = Counter(
    "supportbot_follow_ups", "Messages read together with the earlier questions of their conversation.",
    registry=REGISTRY,
)
LABELS = Counter(
    "supportbot_staff_labels", "Staff labels saved, by verdict (correct, incorrect, retracted).", ["verdict"],
    registry=REGISTRY,
)
SLACK_API_CALLS = Counter(
    "supportbot_slack_api_calls", "Slack Web API calls, by method and outcome (ok, error, unreachable).",
    ["method", "outcome"], registry=REGISTRY,
)
SLACK_API_RETRIES = Counter(
    "supportbot_slack_api_retries", "Slack Web API calls retried (rate limit, 5xx, network).", ["method"],
    registry=REGISTRY,
)
ANSWER_QUEUE = Gauge(
    "supportbot_answer_queue_depth", "Slack questions accepted and not yet answered (queued or being answered).",
    registry=REGISTRY,
)


class RuntimeCollector:
    """Read at scrape time: what serves now and how big the knowledge base is."""

    def __init__(self, versions: Callable[[], dict[str, str]], knowledge: Any = None) -> None:
        self.versions = versions
        self.knowledge = knowledge

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("supportbot_serving", "The router and domain-model (adapter) versions serving now.")
        try:
            info.add_metric([], self.versions())
        except Exception as exc:  # a scrape must never fail because a component is mid-swap
            log.debug("serving versions unavailable for metrics: %s", exc)
            info.add_metric([], {})
        yield info
        if self.knowledge is not None:
            chunks = GaugeMetricFamily("supportbot_knowledge_chunks", "Chunks in the knowledge base index.")
            chunks.add_metric([], float(len(self.knowledge)))
            yield chunks
            indexed = GaugeMetricFamily("supportbot_knowledge_last_index_timestamp_seconds",
                                        "When the knowledge base was last synced with its folder (Unix time).")
            indexed.add_metric([], float(getattr(self.knowledge, "last_indexed_at", 0.0) or 0.0))
            yield indexed


_runtime_collector: RuntimeCollector | None = None


def watch_runtime(versions: Callable[[], dict[str, str]], knowledge: Any = None) -> None:
    """Report this process's serving versions and knowledge base (the last runtime built wins)."""
    global _runtime_collector
    if _runtime_collector is not None:
        REGISTRY.unregister(_runtime_collector)
    _runtime_collector = RuntimeCollector(versions, knowledge)
    REGISTRY.register(_runtime_collector)


def exposition() -> bytes:
    """The text a scrape gets."""
    return generate_latest(REGISTRY)


def record_answer(channel: str, route: str, kind: str, seconds: float, skipped: Sequence[tuple[str, str]],
                  escalation_reason: str, follow_up: bool) -> None:
    """One answered question (called by the pipeline for every channel)."""
    QUESTIONS.labels(channel=channel or "unknown").inc()
    ANSWERS.labels(route=route, kind=kind or "-").inc()
    ANSWER_SECONDS.labels(route=route).observe(seconds)
    for skipped_route, reason in skipped:
        FALLBACKS.labels(route=skipped_route, reason=reason).inc()
    if route == "escalate":
        ESCALATIONS.labels(reason=escalation_reason).inc()
    if follow_up:
        FOLLOW_UPS.inc()


def serve_metrics(host: str, port: int) -> Any:
    """Expose `/metrics` on its own port (Socket Mode and console-less `serve` have no HTTP server)."""
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    log.info("Prometheus metrics on http://%s:%d%s", host, server.server_port, METRICS_PATH)
    return server
