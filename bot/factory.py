"""Builds the running pieces from settings: the one place that wires the product together.

Constructors elsewhere take configuration only; loading models and opening stores happens
here, once per process, so tests build their own pieces and nothing happens at import time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: ConversationStore
    pipeline: Pipeline
    knowledge: Any
    router: Any
    domain: Any
    _closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:  # closing must not hide the real outcome
                log.exception("error while shutting down")


def open_store(settings: Settings) -> ConversationStore:
    return ConversationStore.open(settings.database_url, echo=settings.database.echo)


def build_runtime(settings: Settings, *, watch: bool = False, store: ConversationStore | None = None) -> Runtime:
    """Load models, sync the knowledge base, build router and answerers, assemble the pipeline."""
    from bot.answerers.domain_model import build_domain_answerer
    from bot.answerers.escalation import EscalationAnswerer
    from bot.answerers.retrieval import RetrievalAnswerer
    from bot.indexing.knowledge_base import KnowledgeBase
    from bot.models import configure_torch_threads, force_offline, load_embedder
    from bot.router import build_router

    force_offline()
    configure_torch_threads(settings)
    owns_store = store is None
    store = store or open_store(settings)
    closers: list[Any] = [store.close] if owns_store else []
    embedder = load_embedder(settings)
    knowledge = KnowledgeBase(settings, embedder)
    knowledge.sync()
    closers.append(knowledge.close)
    if watch:
        knowledge.start_watching()
    domain = build_domain_answerer(settings)
    closers.append(domain.close)
    retrieval = RetrievalAnswerer(settings, knowledge, generator=domain.generator)
    router = build_router(settings, embedder=embedder, knowledge=knowledge, store=store)
    pipeline = Pipeline(
        settings,
        store,
        router,
        {"domain": domain, "retrieval": retrieval, "escalate": EscalationAnswerer(settings)},
    )
    return Runtime(settings, store, pipeline, knowledge, router, domain, closers)
