"""The domain route: the shop's fine-tuned model answers plant-care questions.

The answerer owns three promises the backends do not: the promoted adapter is picked up while
the bot runs (built beside the serving model, then swapped in, so no request fails or waits
for a load), one in-process model never generates for two requests at once, and nothing the
model writes reaches a customer before the guard in `bot.llm.guard` has cleaned it. Partial
text is passed on, cleaned, as it grows; Slack edits its message from it at most once per
`slack.stream_update_interval_s`, within its rate limits.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot import metrics
from bot.answerers.lead import UnitVectors
from bot.config import DomainConfig, Route, Settings
from bot.errors import AnswererUnavailable, BotError, NoEvidence
from bot.glossary import Glossary
from bot.interfaces import AskContext, Draft, PartialCallback
from bot.llm.backend import BASE_VERSION, AdapterRef, GenerationParams, GenerationResult, LoadedModel
from bot.llm.contact_guard import ContactAllowlist, remove_invented_contacts
from bot.llm.guard import GuardPolicy, clean_partial, finalize_answer, should_stop_early
from bot.llm.selection import select_backend
from bot.memory.answers import best_excerpt, candidates, excerpt_draft, similar_draft
from bot.memory.faithfulness import supported_share, unsupported_claims
from bot.memory.grounding import grounded_messages
from bot.memory.matching import canonical_question, is_verified_match
from bot.registry import ArtifactRegistry, adapter_registry

if TYPE_CHECKING:
    from bot.indexing.knowledge_base import KnowledgeBase
    from bot.llm.backend import LLMBackend
    from bot.memory import ExpertMemory
    from bot.memory.index import MemoryHit

log = logging.getLogger(__name__)

# A version that failed to load is tried again only after this long (a fixed file stays broken;
# a server that was briefly down comes back).
FAILED_LOAD_RETRY_S = 60.0
MEMORY_CANDIDATES = 3  # entries each memory search returns for the similar answer and the excerpt


class _CleanedPartial:
    """Forwards the growing text, cleaned, whenever it changed; a failing channel never stops
    generation. How often a channel shows it is the channel's business (Slack edits a message at
    most once per `slack.stream_update_interval_s`)."""

    def __init__(self, callback: PartialCallback, policy: GuardPolicy) -> None:
        self.callback = callback
        self.policy = policy
        self.last_text = ""
        self.updates = 0

    def __call__(self, text: str) -> None:
        cleaned = clean_partial(text, self.policy)
        if not cleaned or cleaned == self.last_text:
            return
        self.last_text = cleaned
        self.updates += 1
        try:
            self.callback(cleaned)
        except Exception:  # a failed Slack edit must not cost the customer the answer
            log.warning("partial-answer callback failed; generation continues", exc_info=True)


def _without_invented_contacts(callback: PartialCallback, allowed: ContactAllowlist) -> PartialCallback:
    """Streamed text is guarded too: an invented link must not flash up in Slack before the final answer."""

    def forward(text: str) -> None:
        guarded = remove_invented_contacts(text, allowed, min_words_left=0).text
        if guarded.strip():
            callback(guarded)

    return forward


class DomainAnswerer:
    route: Route = "domain"

    def __init__(
        self,
        config: DomainConfig,
        backend: Callable[[], LLMBackend],
        registry: ArtifactRegistry,
        memory: ExpertMemory | None = None,
        published: Callable[[], ContactAllowlist] | None = None,
        glossary: Glossary | None = None,
    ) -> None:
        """`backend` is called once, on `warm_up()` or the first question: choosing one may probe
        files or a server, which construction must not. `memory` is None when `memory.enabled` is
        off; its own settings (`memory.cfg`) decide when an entry answers or grounds."""
        self.cfg = config
        self.memory = memory
        self.glossary = glossary or Glossary.empty()
        self._sentence_vectors = UnitVectors(memory.embed_texts) if memory is not None else None
        # Contact points the shop published (knowledge base); the answer's grounding entries are
        # added per question. None: nothing is published, so every link or phone is invented.
        self.published = published or (lambda: ContactAllowlist(frozenset()))
        self._choose_backend = backend
        self._backend: LLMBackend | None = None
        self.registry = registry
        self.policy = GuardPolicy.from_config(self.cfg)
        self.generator = DomainTextGenerator(self)
        self._active: LoadedModel | None = None
        self._generate_lock = threading.Lock()  # serial models: one generation at a time
        self._load_lock = threading.Lock()  # one model load at a time
        self._state_lock = threading.Lock()  # poll time, failed versions, swap thread
        self._last_poll = float("-inf")
        self._failed: dict[str, float] = {}
        self._swap_thread: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._closed = threading.Event()

    # --- state -------------------------------------------------------------------------------

    @property
    def backend(self) -> LLMBackend:
        if self._backend is None:
            self._backend = self._choose_backend()
        return self._backend

    @property
    def current_version(self) -> str:
        """The adapter version serving now ("base" = no adapter); before loading, the promoted one."""
        active = self._active
        if active is not None:
            return active.version
        return self.registry.current_version() or BASE_VERSION

    def warm_up(self) -> None:
        """Load the model now (not on the first question) and start watching for new adapters."""
        self._ensure_loaded()
        if self._watcher is None and not self._closed.is_set():
            self._watcher = threading.Thread(
                target=self._watch_registry, name="domain-adapter-watch", daemon=True
            )
            self._watcher.start()

    def close(self) -> None:
        self._closed.set()
        for thread in (self._watcher, self._swap_thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=30)
        with self._generate_lock:
            active, self._active = self._active, None
        if active is not None:
            active.close()
        if self._backend is not None:
            self._backend.close()

    # --- loading and hot swap ---------------------------------------------------------------

    def _adapter_ref(self, version: str | None) -> AdapterRef | None:
        if version is None:
            return None
        return AdapterRef(version=version, path=self.registry.get(version).path)

    def _ensure_loaded(self) -> LoadedModel:
        active = self._active
        if active is not None:
            return active
        with self._load_lock:
            if self._active is not None:
                return self._active
            target = self.registry.current_version()
            try:
                model = self._load(target)
            except BotError as exc:
                raise AnswererUnavailable(f"domain model unavailable: {exc}") from exc
            except Exception as exc:
                log.exception("domain model failed to load")
                raise AnswererUnavailable(f"domain model unavailable: {type(exc).__name__}: {exc}") from exc
            self._active = model
            with self._state_lock:
                self._last_poll = time.monotonic()
            return model

    def _load(self, target: str | None) -> LoadedModel:
        """Load the promoted adapter; when it is broken, serve the base model and say so."""
        if target is None:
            return self.backend.load(None)
        try:
            return self.backend.load(self._adapter_ref(target))
        except Exception:
            log.exception("adapter %s failed to load; serving the base model until a new one is promoted", target)
            with self._state_lock:
                self._failed[target] = time.monotonic()
            return self.backend.load(None)

    def refresh_adapter(self, *, wait: bool = False) -> bool:
        """Check the registry now; swap in a newly promoted adapter. True when a swap started or ran."""
        with self._state_lock:
            self._last_poll = float("-inf")
        started = self._maybe_start_swap()
        if wait and self._swap_thread is not None:
            self._swap_thread.join()
        return started

    def _maybe_start_swap(self) -> bool:
        now = time.monotonic()
        with self._state_lock:
            if self._active is None or now - self._last_poll < self.cfg.adapter_poll_s:
                return False
            self._last_poll = now
            if self._swap_thread is not None and self._swap_thread.is_alive():
                return False
            target = self.registry.current_version()
            if (target or BASE_VERSION) == self._active.version:
                return False
            failed_at = self._failed.get(target or BASE_VERSION)
            if failed_at is not None and now - failed_at < FAILED_LOAD_RETRY_S:
                return False
            self._swap_thread = threading.Thread(
                target=self._swap_to, args=(target,), name="domain-adapter-swap", daemon=True
            )
            self._swap_thread.start()
            return True

    def _swap_to(self, target: str | None) -> None:
        label = target or BASE_VERSION
        started = time.perf_counter()
        with self._load_lock:
            try:
                new = self.backend.load(self._adapter_ref(target))
            except Exception:
                log.exception("adapter %s failed to load; %s keeps serving", label, self.current_version)
                with self._state_lock:
                    self._failed[label] = time.monotonic()
                return
            with self._generate_lock:  # waits for a serial model's request in flight
                old, self._active = self._active, new
        if old is not None:
            old.close()
        log.info(
            "domain adapter swapped from=%s to=%s load_s=%.2f",
            old.version if old else None,
            label,
            time.perf_counter() - started,
        )

    def _watch_registry(self) -> None:
        while not self._closed.wait(self.cfg.adapter_poll_s):
            try:
                self._maybe_start_swap()
            except Exception:  # the watcher must outlive a bad registry read
                log.exception("adapter registry check failed")

    # --- generation --------------------------------------------------------------------------

    def params(self, max_new_tokens: int | None = None) -> GenerationParams:
        cfg = self.cfg
        return GenerationParams(
            max_new_tokens=max_new_tokens or cfg.max_new_tokens,
            temperature=cfg.temperature,
            repetition_penalty=cfg.repetition_penalty,
            no_repeat_ngram_size=cfg.no_repeat_ngram_size,
            stop=tuple(cfg.stop),
        )

    def run_generation(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        policy: GuardPolicy,
        on_partial: PartialCallback | None = None,
    ) -> tuple[str, GenerationResult]:
        """Generate with whichever model serves now; returns its version with the raw result."""
        self._maybe_start_swap()
        model = self._ensure_loaded()
        on_text = _CleanedPartial(on_partial, policy) if on_partial else None

        def stop_check(text: str) -> str | None:
            return should_stop_early(text, policy)

        if model.serial:
            with self._generate_lock:
                model = self._active or model
                return model.version, model.generate(messages, params, on_text, stop_check)
        return model.version, model.generate(messages, params, on_text, stop_check)

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        """An expert entry's answer: as written when an entry asks the same thing (verified), framed
        as the team's answer to a similar question (similar), or its sentences that answer the
        question (excerpt), each with its evidence for the answer-or-hand-off decision. The model's
        own words are proposed only when `domain.model_answers` allows them; with nothing to
        propose, NoEvidence says what came closest."""
        proposals: list[Draft] = []
        excerpts: list[Draft] = []
        grounding: list[MemoryHit] = []
        closest = ""
        if self.memory is not None:
            mem = self.memory.cfg
            found = self.memory.lookup(question, max(mem.ground_k, MEMORY_CANDIDATES),
                                       k_answers=MEMORY_CANDIDATES if mem.similar_threshold <= 1 else 0)
            hits = found.by_question
            if hits and is_verified_match(question, hits[0], mem.verified_threshold):
                top = hits[0]
                log.info("verified answer entry=%s similarity=%.3f event_id=%s", top.entry.entry_id,
                         top.similarity, ctx.event_id)
                return Draft(text=top.entry.answer, confidence=round(top.similarity, 4), kind="verified",
                             model_version=f"memory:{top.entry.entry_id}", evidence=round(top.similarity, 4),
                             found=f"expert entry \u201c{top.entry.question}\u201d asks the same")
            pool = candidates(question, found, self.glossary, self.memory.idf, self.memory.vocabulary)
            if pool:
                closest = pool[0].hit.entry.question
                if pool[0].answer_similarity >= mem.similar_threshold:
                    proposals.append(similar_draft(pool[0]))
                assert self._sentence_vectors is not None
                excerpt = best_excerpt(question, self.memory.embed_query(canonical_question(question)), pool,
                                       self._sentence_vectors)
                if excerpt is not None:
                    excerpts.append(excerpt_draft(excerpt))
            elif found.by_answer or hits:
                nearest = (found.by_answer or hits)[0].entry.question
                closest = f"{nearest} (about another plant or topic)"
            grounding = [hit for hit in hits[: mem.ground_k] if hit.similarity >= mem.ground_min_similarity]
        # The staff's words as written first; then the model's (when it may speak), which streams only
        # when nothing comes before it; the sentences of an entry last.
        if self.cfg.model_answers != "never" and (grounding or self.memory is None or
                                                  self.memory.cfg.ungrounded == "answer"):
            try:
                proposals.append(self._generated(question, grounding, ctx, None if proposals else on_partial))
            except AnswererUnavailable as exc:
                if not proposals and not excerpts:
                    raise
                log.info("generated domain answer dropped (%s); the memory's answers remain", exc)
        proposals += excerpts
        if not proposals:
            raise NoEvidence("no expert entry answers this question yet",
                             found=f"nearest expert entry: \u201c{closest}\u201d" if closest else "no expert entry")
        first, *rest = proposals
        return dataclasses.replace(first, alternatives=tuple(rest))

    def _generated(self, question: str, grounding: list[MemoryHit], ctx: AskContext,
                   on_partial: PartialCallback | None) -> Draft:
        """The model's answer (grounded in the nearest entries when any are close enough), cleaned
        by the guard; with `model_answers = "checked"`, refused unless the entries support it."""
        answer_chars = self.memory.cfg.ground_answer_chars if self.memory is not None else 0
        messages = grounded_messages(self.cfg.system_prompt, question, grounding, answer_chars)
        allowed = (
            self.published().with_texts([h.entry.answer for h in grounding] + [self.cfg.system_prompt])
            if self.cfg.guard.contact_points
            else None
        )
        checked = self.cfg.model_answers == "checked"
        if checked:
            on_partial = None  # an unchecked answer must never reach the customer, even in part
        if on_partial is not None and allowed is not None:
            on_partial = _without_invented_contacts(on_partial, allowed)
        version, result = self.run_generation(messages, self.params(), self.policy, on_partial)
        try:
            text = finalize_answer(result.text, self.policy)
            if allowed is not None:
                guarded = remove_invented_contacts(text, allowed, self.cfg.guard.min_words_left)
                if guarded.removed:
                    metrics.GUARDED.labels(what="invented_contact").inc()
                text = guarded.text
        except AnswererUnavailable:
            metrics.GUARDED.labels(what="degenerate").inc()
            log.warning(
                "domain answer rejected version=%s event_id=%s finish=%s raw=%r",
                version,
                ctx.event_id,
                result.finish_reason,
                result.text[:300],
            )
            raise
        log.info(
            "domain answer version=%s event_id=%s tokens=%d finish=%s seconds=%.2f first_token_s=%.2f",
            version,
            ctx.event_id,
            result.new_tokens,
            result.finish_reason,
            result.seconds,
            result.first_token_s,
        )
        kind = "grounded" if grounding else "generated"
        support = supported_share(text, question, [h.entry.answer for h in grounding], self.glossary)
        if checked:
            problem = unsupported_claims(text, question, [h.entry.answer for h in grounding], self.glossary)
            if problem:
                metrics.GUARDED.labels(what="unsupported").inc()
                raise AnswererUnavailable(f"generated answer not supported by the expert entries ({problem})")
        capped = self.memory is not None and not grounding
        confidence = self.memory.cfg.ungrounded_max_confidence if capped and self.memory is not None else 1.0
        return Draft(text=text, model_version=version, kind=kind, confidence=confidence, evidence=support,
                     found=f"the model's answer, {support:.0%} of its words in the entries")


class DomainTextGenerator:
    """The same model for other answerers' prompts (retrieval's generative mode).

    The caller brings its own system prompt (with retrieved policy text that the answer should
    quote), so only the leak-free checks apply: tokens, loops, length, degenerate output.
    """

    def __init__(self, answerer: DomainAnswerer) -> None:
        self.answerer = answerer
        self.policy = dataclasses.replace(answerer.policy, system_prompt="", refusal_phrases=())

    def generate(
        self,
        messages: list[dict[str, str]],
        *,
        max_new_tokens: int | None = None,
        on_partial: PartialCallback | None = None,
    ) -> str:
        params = self.answerer.params(max_new_tokens)
        _, result = self.answerer.run_generation(messages, params, self.policy, on_partial)
        return finalize_answer(result.text, self.policy)


def build_domain_answerer(
    settings: Settings, memory: ExpertMemory | None = None, knowledge: KnowledgeBase | None = None,
    glossary: Glossary | None = None,
) -> DomainAnswerer:
    """Cheap: the backend is chosen and the model loaded on `warm_up()` or the first question."""
    return DomainAnswerer(
        settings.domain,
        backend=lambda: select_backend(settings),
        registry=adapter_registry(settings),
        memory=memory if settings.memory.enabled else None,
        published=published_contacts(knowledge) if knowledge is not None else None,
        glossary=glossary,
    )


def published_contacts(knowledge: KnowledgeBase) -> Callable[[], ContactAllowlist]:
    """The knowledge base's links, phones, prices and codes, rebuilt only when it re-indexes."""
    cache: dict[int, ContactAllowlist] = {}
    lock = threading.Lock()

    def current() -> ContactAllowlist:
        generation = knowledge.generation
        with lock:
            allowlist = cache.get(generation)
            if allowlist is None:
                allowlist = ContactAllowlist.from_texts(knowledge.published_texts())
                cache.clear()
                cache[generation] = allowlist
            return allowlist

    return current
