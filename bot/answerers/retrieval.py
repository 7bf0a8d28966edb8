"""Answers policy questions from the knowledge base, with citations, or admits it cannot.

Policies are where a wrong answer costs money (a refund promised, a deadline invented), so the
default answer quotes the policy text itself: the paragraphs of the best chunk closest to the
question. The generative mode lets the LLM phrase the answer, but only from the retrieved
text, and its answer is checked: numbers it states must appear in the policies, and most of
its words too; otherwise the question goes to a person. When nothing scores above
`knowledge.min_score`, the answerer raises `AnswererUnavailable`, and the pipeline escalates.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import numpy as np

from bot.answer import AskContext, Draft, PartialCallback, TextGenerator
from bot.config import Route, Settings
from bot.errors import AnswererUnavailable, ConfigError
from bot.indexing.lexical import tokenize

if TYPE_CHECKING:
    from bot.indexing.knowledge_base import KnowledgeBase, SearchHit

log = logging.getLogger(__name__)

REFUSAL_TEXT = "I couldn't find that in our policies."
CONTEXT_CHUNKS = 3  # chunks shown to the LLM in generative mode
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


class RetrievalAnswerer:
    route: Route = "retrieval"

    def __init__(self, settings: Settings, knowledge: KnowledgeBase, generator: TextGenerator | None = None) -> None:
        self.settings = settings
        self.config = settings.knowledge
        self.knowledge = knowledge
        self.generator = generator
        if self.config.answer_mode == "generative" and generator is None:
            raise ConfigError(
                "knowledge.answer_mode: 'generative' needs the domain model to phrase answers, but none "
                "is available; set answer_mode = \"extractive\" or fix the [domain] settings"
            )

    def find(self, question: str) -> Draft | None:
        """An extractive answer, or None when the knowledge base has nothing relevant enough."""
        hits = self._relevant_hits(question)
        return self._extractive(question, hits) if hits else None

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        found = self.knowledge.search(question)
        hits = [h for h in found if h.score >= self.config.min_score]
        if not hits:
            best_score = found[0].score if found else 0.0
            raise AnswererUnavailable(
                f"did not find an answer in the knowledge base (best score {best_score:.2f} < "
                f"{self.config.min_score:.2f})"
            )
        if self.config.answer_mode == "generative":
            # Not streamed: an ungrounded answer must never reach the customer, even in part.
            return self._generative(question, hits)
        draft = self._extractive(question, hits)
        log.debug("retrieval answer event_id=%s best=%s score=%.2f", ctx.event_id, hits[0].chunk_id, hits[0].score)
        return draft

    def _relevant_hits(self, question: str) -> list[SearchHit]:
        hits = self.knowledge.search(question)
        return [h for h in hits if h.score >= self.config.min_score]

    # ---- extractive ------------------------------------------------------------------------

    def _extractive(self, question: str, hits: list[SearchHit]) -> Draft:
        best = hits[0]
        quote = self._quote(question, best.text)
        return Draft(
            text=quote,
            sources=[best.source],
            confidence=round(best.score, 4),
            model_version="retrieval:extractive",
        )

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
        assert self.generator is not None
        context = hits[:CONTEXT_CHUNKS]
        messages = build_grounded_messages(self.settings.app.company_name, question, context)
        reply = self.generator.generate(messages, max_new_tokens=self.settings.domain.max_new_tokens).strip()
        problem = grounding_problem(reply, [h.text for h in context], self.config.grounding_min_overlap)
        if problem:
            log.info("generative retrieval answer refused: %s", problem)
            raise AnswererUnavailable(f"{REFUSAL_TEXT} ({problem})")
        return Draft(
            text=reply,
            sources=[h.source for h in context],
            confidence=round(hits[0].score, 4),
            model_version="retrieval:generative",
        )


def build_grounded_messages(company: str, question: str, hits: list[SearchHit]) -> list[dict[str, str]]:
    blocks = []
    for number, hit in enumerate(hits, start=1):
        where = f"{hit.source.title} > {hit.source.heading}" if hit.source.heading else hit.source.title
        blocks.append(f"[{number}] {where}\n{hit.text}")
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
