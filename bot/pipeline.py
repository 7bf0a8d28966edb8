"""The one entry every channel uses: route a question, answer it, log the turn.

Slack, Rasa, the console chat, `ask` and `eval` all call `Pipeline.answer`, so a question gets
the same answer wherever it is asked, and every answer is in the log for staff to label.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace

from bot.answer import Answer, Answerer, AskContext, Draft, PartialCallback, RouteDecision, Router
from bot.config import ROUTES, Route, Settings
from bot.conversation_log import ConversationStore
from bot.errors import AnswererUnavailable

log = logging.getLogger(__name__)

EMPTY_QUESTION_REPLY = "Ask me a question about our plants, shipping, returns or your account."


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: ConversationStore,
        router: Router,
        answerers: Mapping[str, Answerer],
    ) -> None:
        if "escalate" not in answerers:
            raise ValueError("the pipeline needs an 'escalate' answerer as the last resort")
        self.settings = settings
        self.store = store
        self.router = router
        self.answerers = dict(answerers)

    def route_order(self, decision: RouteDecision) -> tuple[list[Route], str]:
        """Routes to try, in order, and why the first choice was skipped (if it was)."""
        cfg = self.settings.router
        threshold = cfg.thresholds.get(decision.route, 0.0)
        order: list[Route] = []
        skipped = ""
        if decision.confidence >= threshold:
            order.append(decision.route)
        else:
            skipped = (
                f"{decision.route} confidence {decision.confidence:.2f} is below its "
                f"threshold {threshold:.2f}"
            )
        for route in (*cfg.fallback_order, "escalate"):
            if route not in order and route in ROUTES:
                order.append(route)  # type: ignore[arg-type]
        return order, skipped

    def answer(
        self,
        question: str,
        ctx: AskContext | None = None,
        on_partial: PartialCallback | None = None,
    ) -> Answer:
        ctx = ctx or AskContext()
        started = time.perf_counter()
        question = question.strip()
        if not question:
            return Answer(text=EMPTY_QUESTION_REPLY, route="escalate", confidence=0.0, reason="empty question")
        decision = self.router.decide(question)
        order, fallback_reason = self.route_order(decision)
        reasons = [fallback_reason] if fallback_reason else []
        draft: Draft | None = None
        route: Route = "escalate"
        for candidate in order:
            answerer = self.answerers.get(candidate)
            if answerer is None:
                continue
            try:
                draft = answerer.answer(question, ctx, on_partial)
                route = candidate
                break
            except AnswererUnavailable as exc:
                reasons.append(f"{candidate}: {exc}")
                log.warning(
                    "answerer unavailable route=%s event_id=%s reason=%s", candidate, ctx.event_id, exc
                )
        if draft is None:  # the escalation answerer itself failed; never leave a customer empty
            draft = Draft(text="A person from our team will follow up here shortly.")
            route = "escalate"
        confidence = decision.confidence if route == decision.route else draft.confidence
        answer = Answer(
            text=draft.text,
            route=route,
            confidence=round(float(confidence), 4),
            reason=decision.reason,
            sources=list(draft.sources),
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            model_version=draft.model_version,
            router_version=decision.router_version,
            fallback_reason="; ".join(reasons),
        )
        turn_id = self.store.log_turn(question, answer, ctx)
        log.info(
            "answered turn=%s route=%s confidence=%.2f latency_ms=%.0f event_id=%s",
            turn_id,
            route,
            answer.confidence,
            answer.latency_ms,
            ctx.event_id,
        )
        return replace(answer, turn_id=turn_id)
