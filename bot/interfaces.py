"""The values that flow through the pipeline, shared by every channel and answerer.

Kept free of heavy imports so Slack, Rasa, the CLI and tests can use them cheaply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from bot.config import Route


@dataclass(frozen=True)
class Source:
    """A citation: where a retrieval answer's text came from."""

    title: str
    path: str
    heading: str = ""
    url: str = ""
    updated: str = ""
    score: float = 0.0
    snippet: str = ""  # the section's text (cut to knowledge.answer_max_chars): the fuller quote
    quote: str = ""  # what the answer quoted from this section (its lead units), verbatim


@dataclass(frozen=True)
class AskContext:
    """Who asked, where: logged with the turn and used to keep a conversation together."""

    channel: str = "cli"  # slack, rasa, console, cli, eval
    user: str = "local"
    conversation_key: str = ""  # e.g. Slack "<channel>:<thread_ts>", Rasa sender id
    slack_channel: str = ""
    thread_ts: str = ""
    event_id: str = ""
    # Where a follow-up's earlier turns are found: "conversation" (the log's turns under
    # channel + conversation_key), "slack_channel" (a DM: the customer's turns in that Slack
    # channel, any thread, within the window) or "none" (`ask`: one question only).
    history: str = "conversation"
    # Earlier questions the channel itself knows (a Rasa tracker's user messages), oldest first;
    # when given they are the context instead of the log's turns.
    earlier_questions: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteDecision:
    """What the router chose and why; `reason` is shown to staff in Slack and the log."""

    route: Route
    confidence: float
    reason: str
    probabilities: dict[str, float] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)
    router_version: str = ""


@dataclass(frozen=True)
class Draft:
    """An answerer's output before the pipeline logs it."""

    text: str
    sources: list[Source] = field(default_factory=list)
    confidence: float = 1.0
    model_version: str = ""
    # How the answer was made. Domain: "verified" (an expert entry as written), "similar" (an
    # entry's answer to a similar question, as written, framed as such), "excerpt" (the sentences
    # of the nearest entries that answer it, each naming its entry), "grounded" (generated with
    # expert entries in the prompt) or "generated" (the model alone). Retrieval: "policy" (quoted
    # from knowledge/) or "policy_generated". Hand-offs: "escalation" (a person is needed) or
    # "no_answer" (nothing checked answers it yet).
    kind: str = ""
    # How strongly the evidence supports this answer, on the kind's own scale; the answer-or-hand-off
    # decision (bot.handoff) compares it with the kind's threshold. None: not an evidence-based answer.
    evidence: float | None = None
    # What the answer rests on, in words for staff ("expert entry “…” 0.71"), shown with a hand-off.
    found: str = ""
    # Other answers to show, in order, if the answer-or-hand-off decision holds this one back
    # (a similar answer's excerpt); each carries its own kind and evidence.
    alternatives: tuple[Draft, ...] = ()


@dataclass(frozen=True)
class Answer:
    """What every channel shows: text, route, confidence and sources, plus the logged turn id."""

    text: str
    route: Route
    confidence: float
    reason: str
    sources: list[Source] = field(default_factory=list)
    latency_ms: float = 0.0
    turn_id: int | None = None
    model_version: str = ""
    router_version: str = ""
    fallback_reason: str = ""
    kind: str = ""  # see Draft.kind
    evidence: float | None = None  # see Draft.evidence
    # A follow-up read with its conversation: the question as routed and answered ("" when the
    # message stood alone) and the earlier turn it was read with (None: none, or a Rasa tracker).
    standalone_question: str = ""
    context_turn_id: int | None = None
    # A hand-off for lack of evidence: what was found and why it was not enough, for staff only
    # (Slack staff channel, App Home, the log); never shown to the customer.
    handoff_note: str = ""
    # Every draft the decision weighed, in order: {"route", "kind", "evidence", "text", "shown"}
    # (the eval judges them all to calibrate the thresholds; never shown to the customer).
    considered: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PartialCallback = Callable[[str], None]


class Answerer(Protocol):
    """One per route. Raise `AnswererUnavailable` to make the pipeline fall back."""

    route: Route

    def answer(
        self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None
    ) -> Draft: ...


class Router(Protocol):
    def decide(self, question: str) -> RouteDecision: ...


class TextGenerator(Protocol):
    """An LLM behind any backend (HF, llama.cpp, OpenAI-compatible server).

    `messages` are chat messages ({"role", "content"}); the backend applies the chat template.
    Raise `AnswererUnavailable` when the backend cannot answer (server down, timeout).
    """

    def generate(
        self,
        messages: list[dict[str, str]],
        *,
        max_new_tokens: int | None = None,
        on_partial: PartialCallback | None = None,
    ) -> str: ...
