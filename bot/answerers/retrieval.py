"""Answers policy questions from the knowledge base, with citations, or admits it cannot.

Policies are where a wrong answer costs money (a refund promised, a deadline invented), so the
default answer quotes the policy text itself. It leads with the sentences, list items or table
rows of the best sections that answer the question (`bot.answerers.lead`), each section cited
with its fuller text kept in the citation, so the customer reads the answer first and can open
the whole section. `knowledge.lead_max_chars = 0` quotes the best chunk whole instead (its
paragraphs closest to the question when it is long), as before the lead existed.

The generative mode lets the LLM phrase the answer, but only from the same selected units, and
its answer is checked against them: numbers it states must appear there, and most of its words
too; otherwise the question goes to a person. When nothing scores above `knowledge.min_score`,
the answerer raises `AnswererUnavailable`, and the pipeline escalates.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.answerers.lead import (
    UNIT_CACHE_SIZE,
    UnitVectors,
    answer_evidence,
    answer_types,
    choose_lead,
    knowledge_names,
    render_lead,
    score_units,
)
from bot.answerers.policy_units import PolicyUnit, split_units
from bot.config import KnowledgeConfig, Route
from bot.errors import AnswererUnavailable, ConfigError, NoEvidence
from bot.glossary import Glossary
from bot.indexing.embedding import limited_torch_threads
from bot.indexing.lexical import tokenize
from bot.interfaces import AskContext, Draft, PartialCallback, Source, TextGenerator

if TYPE_CHECKING:
    from bot.answerers.lead import LeadUnit
    from bot.indexing.knowledge_base import KnowledgeBase, SearchHit

log = logging.getLogger(__name__)

REFUSAL_TEXT = "I couldn't find that in our policies."
EXPAND_PLACES = True
EXPAND_SYNONYMS = True
PROCEDURE_EXTRA_SECTIONS = 2
CONTEXT_CHUNKS = 3  # chunks shown to the LLM in generative mode when the lead is off
# A number with its currency sign or percent: "$5" is a different fact from "5 days".
_NUMBER = re.compile(r"[$€£]?\s?\d+(?:[.,]\d+)*%?")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")
_REFUSAL_MARKERS = ("couldn't find", "could not find", "cannot find", "can't find", "not in the context",
                    "no information", "does not say", "doesn't say", "not mentioned")

GENERATIVE_SYSTEM_PROMPT = (
    "You answer customer questions for {company} using ONLY the policy excerpts the user gives "
    "you. Quote or closely paraphrase them. Never add prices, dates, numbers, places or "
    "promises that are not in the excerpts. If the excerpts do not answer the question, reply "
    "exactly: " + REFUSAL_TEXT + " Answer in one to three sentences."
)


@dataclass(frozen=True)
class Phrasing:
    """What generative mode needs beyond the knowledge settings: the model that phrases, the
    company it speaks for, and how long it may talk (`app.company_name`, `domain.max_new_tokens`)."""

    generator: TextGenerator
    company_name: str
    max_new_tokens: int


class RetrievalAnswerer:
    route: Route = "retrieval"

    def __init__(self, config: KnowledgeConfig, knowledge: KnowledgeBase, phrasing: Phrasing | None = None,
                 glossary: Glossary | None = None) -> None:
        self.config = config
        self.knowledge = knowledge
        self.phrasing = phrasing
        self.glossary = glossary or Glossary.empty()
        self._unit_encoder: Any = None
        self._unit_vectors = UnitVectors(self._encode_units)
        self._names: tuple[int, frozenset[str]] = (-1, frozenset())  # (index generation, its names)
        self._text: tuple[int, str] = (-1, "")
        if self.config.answer_mode == "generative" and phrasing is None:
            raise ConfigError(
                "knowledge.answer_mode: 'generative' needs the domain model to phrase answers, but none "
                "is available; set answer_mode = \"extractive\" or fix the [domain] settings"
            )

    def find(self, question: str) -> Draft | None:
        """An extractive answer, or None when the knowledge base has nothing relevant enough."""
        question = self.with_places(question)
        hits = self._answerable(self.knowledge.search(question))
        return self._extractive(question, hits) if hits else None

    def with_places(self, question: str) -> str:
        """The question with the regions its places lie in, as the policy names them: "…to Montreal?
        (Quebec, Canada)", and the policy's words for what it says otherwise ("send back": return).
        A small embedder does not know that Montreal is in Canada; the policy only says Canada, so
        without this the zone table's Canada row is never found."""
        if not EXPAND_PLACES:
            return question
        text = self.indexed_text()
        terms = [t for t in self.glossary.place_terms(question, lambda name: name.lower() in text)
                 if t.lower() not in question.lower()]
        if EXPAND_SYNONYMS:
            terms += [t for t in self.glossary.synonym_terms(question) if t not in terms]
        return f"{question} ({', '.join(terms)})" if terms else question

    def indexed_text(self) -> str:
        """Everything indexed, lower-cased, to know which place names the policy uses (per index version)."""
        generation = self.knowledge.generation
        if self._text[0] != generation:
            self._text = (generation, "\n".join(self.knowledge.chunk_texts()).lower())
        return self._text[1]

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        question = self.with_places(question)
        found = self.knowledge.search(question)
        hits = self._answerable(found)
        if not hits:
            best_score = found[0].score if found else 0.0
            closest = (f"{found[0].source.title} > {found[0].source.heading} ({best_score:.2f})"
                       if found else "nothing indexed")
            raise NoEvidence(
                f"did not find an answer in the knowledge base (best score {best_score:.2f} < "
                f"{self.config.min_score:.2f})", found=closest,
            )
        if self.config.answer_mode == "generative":
            # Not streamed: an ungrounded answer must never reach the customer, even in part.
            return self._generative(question, hits)
        draft = self._extractive(question, hits)
        log.debug("retrieval answer event_id=%s best=%s score=%.2f", ctx.event_id, hits[0].chunk_id, hits[0].score)
        return draft

    def _answerable(self, found: list[SearchHit]) -> list[SearchHit]:
        """All hits when the best clears `knowledge.min_score`, else none.

        The threshold decides whether the knowledge base answers at all; once it does, the lead
        may still take a unit from a section just under it ("Orders over $99 ship free" sits in a
        section scoring 0.348 for "Is shipping free if my order is big enough?"), since each unit
        is scored with its section's score anyway (bench/policy_answers.py, tuning set 0.613 → 0.620).
        """
        return list(found) if found and found[0].score >= self.config.min_score else []

    # ---- extractive ------------------------------------------------------------------------

    def _extractive(self, question: str, hits: list[SearchHit]) -> Draft:
        scored = self.scored_units(question, hits) if self.config.lead_max_chars else []
        groups = self.lead(question, hits, scored) if scored else []
        if not groups:  # lead off, or a section with nothing but a title: quote the best chunk
            best = hits[0]
            return Draft(
                text=self._quote(question, best.text),
                sources=[best.source],
                confidence=round(best.score, 4),
                model_version="retrieval:extractive",
                kind="policy",
                evidence=round(best.score, 4),
                found=f"{best.source.title} > {best.source.heading} (search score {best.score:.2f})",
            )
        lead = scored[0]
        return Draft(
            text=render_lead(groups),
            sources=[self._cited(hit, units) for hit, units in groups],
            confidence=round(hits[0].score, 4),
            model_version="retrieval:extractive",
            kind="policy",
            evidence=answer_evidence(question, scored, hits),
            found=f"{lead.hit.source.title} > {lead.hit.source.heading}: \u201c{lead.unit.text[:160]}\u201d "
                  f"(lead score {lead.score:.2f})",
        )

    def names(self) -> frozenset[str]:
        """The knowledge base's names (plans, places, products), recomputed when it re-indexes."""
        generation = self.knowledge.generation
        if self._names[0] != generation:
            self._names = (generation, knowledge_names(self.knowledge.chunk_texts()))
        return self._names[1]

    def scored_units(self, question: str, hits: list[SearchHit]) -> list[LeadUnit]:
        # The steps of a procedure often sit in a section of their own that ranks below the one that
        # says what may be done ("How to start a return" under "What you can return"): look further.
        extra = PROCEDURE_EXTRA_SECTIONS if "procedure" in answer_types(question) else 0
        candidates = hits[: self.config.lead_sections + extra]
        # "send back" was said for "return": the lead looks for the policy's word, not the customer's.
        said_otherwise = {w for phrase in self.glossary.synonyms_in(question).values() for w in tokenize(phrase)}
        return score_units(question, self.knowledge.embed_query(question), candidates, self._unit_vectors,
                           names=self.names(), said_otherwise=said_otherwise if EXPAND_SYNONYMS else set())

    def lead(self, question: str, hits: list[SearchHit],
             scored: list[LeadUnit] | None = None) -> list[tuple[SearchHit, list[PolicyUnit]]]:
        """The units that answer, grouped by section, best first (see `bot.answerers.lead`)."""
        scored = self.scored_units(question, hits) if scored is None else scored
        groups = choose_lead(scored, self.config.lead_max_chars, self.config.lead_max_units,
                             steps="procedure" in answer_types(question))
        log.debug("lead for %r: %s", question, [(h.chunk_id, [u.index for u in units]) for h, units in groups])
        return groups

    def warm_up(self) -> int:
        """Embed the units of every indexed section now, so no customer waits for it later.

        Cold, a question's three sections cost 100-200 ms of unit embedding on a busy 2-core
        machine; cached, the lead adds a few milliseconds. Sections re-indexed later are embedded
        on their first question. Returns the number of units embedded.
        """
        if self.config.lead_max_chars == 0:
            return 0
        started = time.perf_counter()
        texts = list(dict.fromkeys(u.text for chunk in self.knowledge.chunk_texts() for u in split_units(chunk)))
        texts = texts[:UNIT_CACHE_SIZE]
        self._unit_vectors(texts)
        log.info("lead units embedded: %d units in %.1fs", len(texts), time.perf_counter() - started)
        return len(texts)

    def _encode_units(self, texts: list[str]) -> np.ndarray:
        """Units are embedded like the question (same encoder, same threads), so cosines compare."""
        if self._unit_encoder is None:
            from bot.query_encoder import QueryEncoder

            self._unit_encoder = QueryEncoder(self.knowledge.embedder, "float32")
        with limited_torch_threads(self.config.query_threads):
            return self._unit_encoder.encode(texts)

    def _cited(self, hit: SearchHit, units: list[PolicyUnit]) -> Source:
        """The section's citation, with the units quoted from it and its fuller text as the snippet."""
        return replace(hit.source, quote=render_lead([(hit, units)]), snippet=self._fuller_quote(hit.text))

    def _fuller_quote(self, text: str) -> str:
        """The section as written, cut at a paragraph (else a word) to `knowledge.answer_max_chars`."""
        limit = self.config.answer_max_chars
        text = text.strip()
        if len(text) <= limit:
            return text
        cut = text.rfind("\n\n", 0, limit)
        if cut <= 0:
            cut = text.rfind(" ", 0, limit - 1)
        return text[: cut if cut > 0 else limit - 1].rstrip() + " …"

    def _quote(self, question: str, text: str) -> str:
        """The whole chunk when it fits; else its paragraphs closest to the question, in order."""
        limit = self.config.answer_max_chars
        if len(text) <= limit:
            return text.strip()
        paragraphs = [p.strip() for p in _PARAGRAPHS.split(text) if p.strip()]
        if len(paragraphs) <= 1:
            paragraphs = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
        embedder = self.knowledge.embedder
        vectors = np.asarray(embedder.encode(paragraphs, normalize_embeddings=True, show_progress_bar=False))
        similarity = vectors @ self.knowledge.embed_query(question)
        chosen: list[int] = []
        used = 0
        for index in np.argsort(-similarity):
            size = len(paragraphs[index]) + (2 if chosen else 0)
            if chosen and used + size > limit:
                continue
            chosen.append(int(index))
            used += size
        quote = "\n\n".join(paragraphs[i] for i in sorted(chosen))
        return quote if len(quote) <= limit else quote[: limit - 1].rstrip() + "…"

    # ---- generative ------------------------------------------------------------------------

    def _generative(self, question: str, hits: list[SearchHit]) -> Draft:
        assert self.phrasing is not None
        if self.config.lead_max_chars == 0:
            excerpts = [(hit, hit.text) for hit in hits[:CONTEXT_CHUNKS] if hit.score >= self.config.min_score]
        else:  # the same units an extractive answer would quote, so the check below means the same
            excerpts = [(hit, render_lead([(hit, units)])) for hit, units in self.lead(question, hits)]
        messages = build_grounded_messages(self.phrasing.company_name, question, excerpts)
        reply = self.phrasing.generator.generate(messages, max_new_tokens=self.phrasing.max_new_tokens).strip()
        problem = grounding_problem(reply, [text for _, text in excerpts], self.config.grounding_min_overlap)
        if problem:
            log.info("generative retrieval answer refused: %s", problem)
            raise AnswererUnavailable(f"{REFUSAL_TEXT} ({problem})")
        return Draft(
            text=reply,
            sources=[replace(hit.source, quote=text) for hit, text in excerpts],
            confidence=round(hits[0].score, 4),
            model_version="retrieval:generative",
        )


def build_grounded_messages(
    company: str, question: str, excerpts: list[tuple[SearchHit, str]]
) -> list[dict[str, str]]:
    """The chat prompt: each excerpt numbered under its title and heading, then the question."""
    blocks = []
    for number, (hit, text) in enumerate(excerpts, start=1):
        where = f"{hit.source.title} > {hit.source.heading}" if hit.source.heading else hit.source.title
        blocks.append(f"[{number}] {where}\n{text}")
    user = "Policy excerpts:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}"
    return [
        {"role": "system", "content": GENERATIVE_SYSTEM_PROMPT.format(company=company)},
        {"role": "user", "content": user},
    ]


def grounding_problem(answer: str, context: list[str], min_overlap: float) -> str:
    """Why `answer` is not supported by `context` ("" when it is)."""
    if not answer.strip():
        return "the model gave an empty answer"
    lowered = answer.lower()
    if any(marker in lowered for marker in _REFUSAL_MARKERS):
        return "the model found no answer in the retrieved policies"
    joined = "\n".join(context)
    context_numbers = {_plain_number(n) for n in _NUMBER.findall(joined)}
    invented = sorted({_plain_number(n) for n in _NUMBER.findall(answer)} - context_numbers)
    if invented:
        return f"numbers not in the policies: {', '.join(invented[:5])}"
    words = [t for t in tokenize(answer) if not any(c in t for c in "-_./")]
    if not words:
        return ""
    known = set(tokenize(joined))
    overlap = sum(1 for w in words if w in known) / len(words)
    if overlap < min_overlap:
        return f"only {overlap:.0%} of its words appear in the policies (need {min_overlap:.0%})"
    return ""


def _plain_number(text: str) -> str:
    return text.replace(",", "").replace(" ", "").rstrip(".")
