"""Builds the running pieces from settings: the one place that wires the product together.

Constructors elsewhere take configuration only; loading models and opening stores happens
here, once per process, so tests build their own pieces and nothing happens at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.conversation_log.opening import open_store
from bot.errors import AnswererUnavailable
from bot.handoff import AnswerGate, load_calibration
from bot.pipeline import Pipeline

if TYPE_CHECKING:
    from bot.answerers.domain_model import DomainAnswerer
    from bot.indexing.knowledge_base import KnowledgeBase
    from bot.memory import ExpertMemory
    from bot.memory.index import EmbedQuery, EmbedTexts
    from bot.router import TopicRouter
    from training.background import SeedAdapterJob

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything one process serves with, built once by `build_runtime` for every channel
    (Slack, Rasa, the console, `ask`, `eval`), closed once when it stops."""

    settings: Settings
    store: ConversationStore
    pipeline: Pipeline
    knowledge: KnowledgeBase
    router: TopicRouter
    domain: DomainAnswerer
    _closers: list[Callable[[], None]] = field(default_factory=list)
    memory: ExpertMemory | None = None
    seed_training: SeedAdapterJob | None = None  # while a fresh install trains its first adapter

    def warm_up_domain(self) -> None:
        """Load the domain model now, so the first customer does not wait minutes for it. An
        inference server that is still starting is not fatal: the model loads on the first
        domain question, and until then those questions fall back.

        Never on a thread beside a channel that prints: llama-cpp-python silences its loader by
        pointing file descriptors 1 and 2 at /dev/null for the whole process, so a console answer
        printed meanwhile is lost (piped questions lost most of their answers that way)."""
        try:
            self.domain.warm_up()
        except AnswererUnavailable as exc:
            log.warning("domain model not ready at start (%s); it loads on the first domain question, "
                        "and until then those questions fall back to retrieval or a person", exc)

    def close(self) -> None:
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception:  # closing must not hide the real outcome
                log.exception("error while shutting down")


def build_runtime(
    settings: Settings,
    *,
    watch: bool = False,
    store: ConversationStore | None = None,
    follow_labels: bool | None = None,
    train_seed_adapter: bool = False,
    open_gate: bool = False,
) -> Runtime:
    """Check the state on disk, load models, sync the knowledge base and the expert memory, build
    router and answerers, assemble the pipeline. State problems surface first, as one line,
    before minutes of loading. `follow_labels` (default: `watch`) keeps the expert memory in step
    with staff labels saved while the process runs (Slack and Rasa servers). `train_seed_adapter`
    (the long-running `serve`, `chat` and `actions`) trains the seed adapter in the background on
    a state dir that never trained (`training.seed_adapter_at_start`). `open_gate` shows every
    answer whatever its evidence: only `eval --calibrate`, which must see what each answerer says."""
    from bot.answerers.domain_model import build_domain_answerer
    from bot.answerers.retrieval import Phrasing, RetrievalAnswerer
    from bot.glossary import load_glossary
    from bot.indexing.knowledge_base import build_knowledge_base
    from bot.model_assets import configure_torch_threads, force_offline, load_embedder
    from bot.router import build_router
    from bot.state_check import check_state_at_start

    check_state_at_start(settings, conversation_log=False)  # open_store checks the log's own place
    force_offline()
    configure_torch_threads(settings)
    owns_store = store is None
    store = store or open_store(settings)
    closers: list[Any] = [store.close] if owns_store else []
    embedder = load_embedder(settings)
    knowledge = build_knowledge_base(settings, embedder)
    knowledge.sync()
    closers.append(knowledge.close)
    if watch:
        knowledge.start_watching()
    memory = build_expert_memory(settings, store, embedder, knowledge)
    if memory is not None:
        closers.append(memory.close)
        if watch if follow_labels is None else follow_labels:
            memory.start_watching()
    glossary = load_glossary(settings.app.glossary_file)
    domain = build_domain_answerer(settings, memory, knowledge, glossary)
    closers.append(domain.close)
    phrasing = Phrasing(domain.generator, settings.app.company_name, settings.domain.max_new_tokens)
    retrieval = RetrievalAnswerer(settings.knowledge, knowledge, phrasing, glossary)
    retrieval.warm_up()  # lead units embedded before the first customer asks (bot.answerers.lead)
    if settings.router.train_at_start:
        train_first_router(settings, embedder, store, knowledge)
    router = build_router(settings, embedder=embedder, knowledge=knowledge, store=store)
    router.warm_up()  # the encoder copy and the promoted version load now, not on the first question
    from bot import metrics

    metrics.watch_runtime(lambda: serving_versions(router, domain), knowledge)
    pipeline = Pipeline(
        settings.router,
        store,
        router,
        {"domain": domain, "retrieval": retrieval, "escalate": escalation_answerer(settings)},
        conversation=settings.conversation,
        max_question_chars=settings.app.max_question_chars,
        gate=AnswerGate.open() if open_gate else answer_gate(settings),
        subjects=subject_finder(glossary, retrieval.names),
    )
    runtime = Runtime(settings, store, pipeline, knowledge, router, domain, closers, memory)
    if train_seed_adapter:
        runtime.seed_training = start_seed_training(settings, domain)
        if runtime.seed_training is not None:
            closers.append(runtime.seed_training.close)
    return runtime


def answer_gate(settings: Settings) -> AnswerGate:
    """The answer-or-hand-off thresholds for `answering.wrong_answer_budget`, from the calibration file."""
    cfg = settings.answering
    records = load_calibration(cfg.calibration_file) if cfg.calibration_file is not None else []
    gate = AnswerGate.from_records(records, cfg.wrong_answer_budget, cfg.thresholds)
    log.info("answer gate for a %.0f%% wrong-answer budget: %s", cfg.wrong_answer_budget * 100,
             "; ".join(gate.describe()) or "no thresholds (no calibration)")
    return gate


def subject_finder(glossary: Any, knowledge_names: Callable[[], frozenset[str]]) -> Callable[[str], list[tuple[str, str]]]:
    """What a message names, for reading follow-ups: glossary plants and places, and the knowledge
    base's own names (plans, zones, products), each as (kind, name)."""
    from bot.indexing.lexical import tokenize

    def find(text: str) -> list[tuple[str, str]]:
        # A group ("carnivorous plants") fills the same slot as a plant.
        found = [("plant" if m.kind == "group" else m.kind, m.target if m.kind == "plant" else m.words)
                 for m in glossary.mentions(text) if m.kind in ("plant", "group", "place")]
        named = {w for _, name in found for w in tokenize(name)}
        names = knowledge_names()
        for word in text.replace("?", " ").split():
            term = next(iter(tokenize(word)), "")
            if term and term in names and term not in named:
                found.append(("name", word.strip(".,!;:()\"'")))
                named.add(term)
        return found

    return find


def escalation_answerer(settings: Settings) -> Any:
    from bot.answerers.escalation import EscalationAnswerer

    return EscalationAnswerer(settings.app.company_name, settings.answering.no_answer_text, settings.answering.teams)


def serving_versions(router: Any, domain: Any) -> dict[str, str]:
    """What `/metrics` reports as serving now (`supportbot_serving_info`), read at each scrape."""
    return {"router": str(router.version), "domain_model": str(domain.current_version)}


def start_seed_training(settings: Settings, domain: Any) -> Any:
    """The background seed-adapter job when this state dir needs one (else None); never fatal."""
    from training.background import SeedAdapterJob

    job = SeedAdapterJob(settings, on_promoted=lambda: domain.refresh_adapter())
    try:
        return job if job.start() else None
    except OSError as exc:  # no fork allowed, a read-only state dir: the base model still answers
        log.warning("could not start the seed adapter training (%s); run `supportbot train run`", exc)
        return None


def train_first_router(settings: Settings, embedder: Any, store: ConversationStore, knowledge: Any) -> str | None:
    """On a fresh install, train and promote a router from the seed file before the first answer.

    Zero-shot routing (nearest topic centroid) sends questions that mix topics ("can I return
    a plant that arrived with mealybugs?") to the wrong answerer more often than a trained
    router, and training takes seconds. A failure is logged and leaves zero-shot routing: the
    bot must start either way. Returns the version trained, or None."""
    from bot.registry import router_registry

    if router_registry(settings).current_version() is not None:
        return None
    from training.router_training import train_router

    log.info("no router trained yet: training one from %s before answering", settings.router.seed_file)
    try:
        report = train_router(settings, embedder=embedder, store=store, knowledge=knowledge)
    except Exception as exc:  # a bad seed file, a full disk: zero-shot still answers
        log.warning("router training at start failed (%s: %s); routing zero-shot until "
                    "`supportbot router train` succeeds", type(exc).__name__, exc)
        return None
    log.info("router %s trained and promoted in %.1fs (cross-validated route accuracy %.0f%%)",
             report.version, report.duration_s, report.cv_accuracy * 100)
    return report.version


def build_expert_memory(settings: Settings, store: ConversationStore, embedder: Any, knowledge: Any) -> Any:
    """The expert memory, synced from the seed file and the log; None when `memory.enabled` is off.

    Entries are embedded like the router's examples; a question goes through the knowledge
    base's query encoder (float32, the same vectors), which also remembers it for a while."""
    if not settings.memory.enabled:
        return None
    from bot.indexing.embedding import embed

    memory = expert_memory_for(
        settings, store, lambda texts: embed(embedder, list(texts)), knowledge.embed_query, knowledge.fingerprint()
    )
    memory.refresh(force=True)
    return memory


def expert_memory_for(
    settings: Settings, store: ConversationStore, embed_texts: EmbedTexts, embed_query: EmbedQuery, fingerprint: str
) -> ExpertMemory:
    """An expert memory as configured: the `[memory]` section, entries from `training.seed_dataset`,
    collections beside the knowledge base's (same Chroma, names from `knowledge.collection`)."""
    from bot.indexing.chroma_store import ChromaLocation
    from bot.memory import ExpertMemory

    return ExpertMemory(
        settings.memory, store, embed_texts, embed_query, fingerprint,
        chroma=ChromaLocation.of(settings.knowledge.chroma_url, settings.state_dir),
        collection=settings.knowledge.collection,
        seed_file=settings.training.seed_dataset,
    )
