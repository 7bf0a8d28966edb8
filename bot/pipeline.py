"""The one entry every channel uses: route a question, answer it, log the turn.

Slack, Rasa, the console chat, `ask` and `eval` all call `Pipeline.answer`, so a question gets
the same answer wherever it is asked, and every answer is in the log for staff to label.
The question is cleaned here too (`bot.question_input`), so no channel can pass invalid UTF-8,
control characters or an endless message on to the router, the models or the database; and a
log that cannot be written never costs the customer an answer it already has.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bot import metrics
from bot.config import ROUTES, ConversationConfig, Route, RouterConfig, Settings
from bot.conversation_log import ConversationStore
from bot.errors import AnswererUnavailable, NoEvidence, StoreError
from bot.followups import FollowupResolver, Resolution, SubjectFinder, no_subjects
from bot.handoff import AnswerGate
from bot.interfaces import Answer, Answerer, AskContext, Draft, PartialCallback, RouteDecision, Router
from bot.masking import mask_secrets_in_text
from bot.question_input import TOO_LONG_REASON, clean_context, clean_question, too_long_reply

log = logging.getLogger(__name__)

STAFF_DRAFT_ROUTES: tuple[Route, ...] = ("retrieval", "domain")
FOLLOW_UP_SUFFIX = "@follow-up"


def staff_draft(answerers: Mapping[str, Answerer], question: str, ctx: AskContext) -> str:
    """What the bot would have said had it not escalated, as a head start for the person.

    Asks the answerers directly, so the draft is not logged as a turn and the customer never
    sees it. No answerer able to answer gives "".
    """
    for route in STAFF_DRAFT_ROUTES:
        answerer = answerers.get(route)
        if answerer is None:
            continue
        try:
            draft = answerer.answer(question, ctx, None)
        except AnswererUnavailable as exc:
            log.info("no %s draft for staff (%s)", route, exc)
            continue
        except Exception:  # a draft is a courtesy; the escalation itself must still go out
            log.exception("the %s answerer failed while drafting for staff", route)
            continue
        if draft.text.strip():
            return f"({route}) {draft.text.strip()}"
    return ""

EMPTY_QUESTION_REPLY = "Ask me a question about our plants, shipping, returns or your account."


class Pipeline:
    """Routes with `router`, applies the routing policy of `[router]` (per-route thresholds and
    the fallback order), reads follow-ups with `[conversation]`, refuses questions longer than
    `max_question_chars`, shows an answer only when `gate` finds its evidence enough (else hands
    the question off as "no checked answer yet"), and logs every turn to `store`."""

    def __init__(
        self,
        routing: RouterConfig,
        store: ConversationStore,
        router: Router,
        answerers: Mapping[str, Answerer],
        *,
        conversation: ConversationConfig,
        max_question_chars: int,
        gate: AnswerGate | None = None,
        subjects: SubjectFinder = no_subjects,
    ) -> None:
        if "escalate" not in answerers:
            raise ValueError("the pipeline needs an 'escalate' answerer as the last resort")
        self.routing = routing
        self.max_question_chars = max_question_chars
        self.store = store
        self.router = router
        self.answerers = dict(answerers)
        self.gate = gate or AnswerGate()
        self.followups = FollowupResolver(conversation, store, router.decide, subjects)
        self._log_failures = 0  # consecutive failed turn writes: only the first gets a traceback
        self._log_failures_lock = threading.Lock()  # Slack answers on several threads at once

    @classmethod
    def from_settings(
        cls, settings: Settings, store: ConversationStore, router: Router, answerers: Mapping[str, Answerer],
        gate: AnswerGate | None = None, subjects: SubjectFinder = no_subjects,
    ) -> Pipeline:
        """The pipeline with the sections it reads taken from `settings`."""
        return cls(settings.router, store, router, answerers, conversation=settings.conversation,
                   max_question_chars=settings.app.max_question_chars, gate=gate, subjects=subjects)

    def route_order(self, decision: RouteDecision) -> tuple[list[Route], str]:
        """Routes to try, in order, and why the first choice was skipped (if it was)."""
        cfg = self.routing
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
                order.append(route)
        return order, skipped

    def staff_draft(self, question: str, ctx: AskContext) -> str:
        return staff_draft(self.answerers, question, ctx)

    def answer(
        self,
        question: str,
        ctx: AskContext | None = None,
        on_partial: PartialCallback | None = None,
    ) -> Answer:
        ctx = clean_context(ctx or AskContext())
        started = time.perf_counter()
        question = clean_question(question).strip()
        if not question:
            metrics.record_answer(ctx.channel, "escalate", "", time.perf_counter() - started, [], "empty", False)
            return Answer(text=EMPTY_QUESTION_REPLY, route="escalate", confidence=0.0, reason="empty question")
        limit = self.max_question_chars
        if len(question) > limit:
            return self._refuse_too_long(question, ctx, started)
        resolution = self._resolve(question, ctx)
        decision, asked = resolution.decision, resolution.question
        order, fallback_reason = self.route_order(decision)
        reasons = [fallback_reason] if fallback_reason else []
        skipped = [(decision.route, "low_confidence")] if fallback_reason else []
        draft: Draft | None = None
        route: Route = "escalate"
        held_back: list[str] = []  # what the evidence-less routes found, and why it was not enough
        considered: list[dict[str, Any]] = []  # every draft weighed, for staff and the eval
        no_answer_route = ""
        for candidate in order:
            answerer = self.answerers.get(candidate)
            if answerer is None:
                continue
            try:
                proposed = answerer.answer(asked, ctx, on_partial)
            except NoEvidence as exc:
                reasons.append(f"{candidate}: {exc}")
                skipped.append((candidate, "no_evidence"))
                held_back.append(f"{candidate}: {exc}" + (f"; closest: {exc.found}" if exc.found else ""))
                no_answer_route = no_answer_route or candidate
                log.info("no evidence route=%s event_id=%s reason=%s", candidate, ctx.event_id, exc)
                continue
            except AnswererUnavailable as exc:
                reasons.append(f"{candidate}: {exc}")
                skipped.append((candidate, "unavailable"))
                no_answer_route = no_answer_route or (candidate if candidate != "escalate" else "")
                log.warning(
                    "answerer unavailable route=%s event_id=%s reason=%s", candidate, ctx.event_id, exc
                )
                continue
            if candidate == "escalate":
                draft, route = proposed, candidate
                break
            shown = self._first_shown(candidate, proposed, considered, held_back, ctx, resolution, question)
            if shown is None:  # the one answer-or-hand-off decision: every draft too weak to show
                reasons.append(f"{candidate}: {considered[-1]['why']}")
                skipped.append((candidate, "no_evidence"))
                no_answer_route = no_answer_route or candidate
                continue
            draft, route = shown, candidate
            break
        if draft is None:  # the escalation answerer itself failed; never leave a customer empty
            draft = Draft(text="A person from our team will follow up here shortly.")
            route = "escalate"
        if route == "escalate" and no_answer_route and decision.route != "escalate" and not fallback_reason:
            no_answer = getattr(self.answerers["escalate"], "no_answer", None)
            if no_answer is not None:
                draft = no_answer(no_answer_route)
        # An answerer can only lower the router's confidence (an ungrounded model answer says less).
        confidence = min(decision.confidence, draft.confidence) if route == decision.route else draft.confidence
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
            kind=draft.kind,
            standalone_question=resolution.standalone_question,
            context_turn_id=resolution.context_turn_id,
            evidence=draft.evidence,
            handoff_note="\n".join(held_back) if route == "escalate" else "",
            considered=considered,
        )
        turn_id = self._log_turn(question, answer, ctx)
        metrics.record_answer(ctx.channel, route, draft.kind, time.perf_counter() - started, skipped,
                              "routed" if decision.route == "escalate" and not skipped else "fallback",
                              resolution.used_context)
        log.info(
            "answered turn=%s route=%s confidence=%.2f latency_ms=%.0f event_id=%s",
            turn_id,
            route,
            answer.confidence,
            answer.latency_ms,
            ctx.event_id,
        )
        return replace(answer, turn_id=turn_id)

    def _first_shown(self, route: Route, proposed: Draft, considered: list[dict[str, Any]],
                     held_back: list[str], ctx: AskContext, resolution: Resolution, message: str) -> Draft | None:
        """The first of the answerer's drafts (its answer, then its alternatives) whose evidence is
        enough to show, and which is not the previous turn's answer again to a message that asks
        something new; the others are noted for staff. None when none is."""
        drafts = (proposed, *proposed.alternatives)
        # A follow-up read with its conversation is answered less reliably than a first question
        # with the same evidence, so it has thresholds of its own ("policy@follow-up").
        suffix = FOLLOW_UP_SUFFIX if resolution.used_context else ""
        for position, draft in enumerate(drafts):
            shortfall = self.gate.shortfall(route, draft.kind + suffix, draft.evidence)
            if not shortfall and resolution.repeats_previous(message, draft.text):
                shortfall = "it is the previous answer again, and the follow-up asks something new"
            considered.append({"route": route, "kind": draft.kind + suffix, "evidence": draft.evidence,
                               "text": draft.text, "shown": not shortfall, "why": shortfall})
            if not shortfall:
                # The rest were not needed; the eval still judges them, to calibrate their kinds.
                considered.extend({"route": route, "kind": d.kind + suffix, "evidence": d.evidence, "text": d.text,
                                   "shown": False, "why": "an earlier draft was shown"}
                                  for d in drafts[position + 1:])
                return replace(draft, alternatives=())
            held_back.append(f"{route} would have said ({draft.kind}): {draft.text.strip()[:600]}"
                             + (f" [{draft.found}]" if draft.found else "") + f"; {shortfall}")
            log.info("answer held back route=%s kind=%s evidence=%s event_id=%s: %s", route, draft.kind,
                     draft.evidence, ctx.event_id, shortfall)
        return None

    def _resolve(self, question: str, ctx: AskContext) -> Resolution:
        """The message alone or read with its conversation; a log that cannot be read costs the
        context, never the answer."""
        try:
            return self.followups.resolve(question, ctx)
        except (SQLAlchemyError, StoreError) as exc:
            log.warning("could not read the conversation's earlier turns (%s); answering the message alone",
                        type(exc).__name__)
            return Resolution(question, self.router.decide(question))

    def _refuse_too_long(self, question: str, ctx: AskContext, started: float) -> Answer:
        """A fixed reply, without the router or any model; the turn is logged cut to the limit."""
        limit = self.max_question_chars
        answer = Answer(
            text=too_long_reply(len(question), limit),
            route="escalate",
            confidence=0.0,
            reason=TOO_LONG_REASON,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            fallback_reason=f"question of {len(question)} characters is over app.max_question_chars ({limit})",
        )
        turn_id = self._log_turn(question[:limit], answer, ctx)
        metrics.record_answer(ctx.channel, "escalate", "", time.perf_counter() - started, [], "too_long", False)
        log.info("refused an over-long question turn=%s chars=%d limit=%d event_id=%s",
                 turn_id, len(question), limit, ctx.event_id)
        return replace(answer, turn_id=turn_id)

    def _log_turn(self, question: str, answer: Answer, ctx: AskContext) -> int | None:
        """Log the turn; when the log cannot be written, the customer still gets the answer.

        A full disk or a read-only database fails every turn until someone fixes it, so only
        the first failure carries a traceback; the rest are one line each, and the recovery
        is announced.
        """
        try:
            turn_id = self.store.log_turn(question, answer, ctx)
        except (SQLAlchemyError, StoreError, OSError) as exc:
            with self._log_failures_lock:
                self._log_failures += 1
                failures = self._log_failures
            cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
            first_line = (str(cause).strip().splitlines() or [""])[0]
            log.error(
                "conversation log write failed (%d in a row), answer shown but not logged: %s: %s event_id=%s",
                failures,
                type(cause).__name__,
                mask_secrets_in_text(first_line),
                ctx.event_id,
                exc_info=failures == 1,
            )
            return None
        if self._log_failures:
            with self._log_failures_lock:
                failures, self._log_failures = self._log_failures, 0
            if failures:
                log.warning("conversation log writes work again after %d failed", failures)
        return turn_id
