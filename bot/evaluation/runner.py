"""Load a JSONL test set and run every question through the same `Pipeline.answer` customers hit.

A malformed line is reported with its line number and skipped: one typo in a 300-line test
set should cost that line, not the whole run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bot.config import ROUTES
from bot.errors import BotError
from bot.evaluation.judge import AnswerKey, judge_answer, parse_key
from bot.evaluation.metrics import (
    DEGENERATE_NGRAM,
    DEGENERATE_THRESHOLD,
    degenerate_ratio,
    rouge_l,
    states_key_fact,
    token_f1,
)
from bot.interfaces import AskContext
from bot.llm.guard import GuardPolicy, degenerate_reason
from bot.pipeline import Pipeline

log = logging.getLogger(__name__)

EVAL_CHANNEL = "eval"
KNOWN_FIELDS = ("id", "question", "expected_route", "reference", "expected_source", "key_fact", "accept", "reject",
                "answerable", "notes")
# A conversation line: {"id": ..., "turns": [{question, expected_route, ..., "depends": bool}, ...]}
CONVERSATION_FIELDS = ("id", "turns", "notes")
TURN_FIELDS = (*[f for f in KNOWN_FIELDS if f != "id"], "depends")
ALONE = "alone"  # ItemResult.variant of a follow-up answered again without its conversation

ProgressCallback = Callable[[int, int], None]


class InvalidTestSet(BotError):
    """The test set cannot be used at all (missing, unreadable, or no valid line)."""


@dataclass(frozen=True)
class EvalItem:
    line: int
    id: str
    question: str
    expected_route: str
    reference: str = ""
    expected_sources: tuple[str, ...] = ()
    key_facts: tuple[str, ...] = ()  # the answer's first sentence should state one of these
    conversation: str = ""  # the conversation a turn belongs to ("" for a single question)
    turn: int = 0  # 0 for the first (or only) question, 1.. for follow-ups
    depends: bool | None = None  # a follow-up that cannot be understood alone (test set's word)
    key: AnswerKey = AnswerKey()  # what makes a given answer right or wrong (bot.evaluation.judge)


@dataclass(frozen=True)
class LineProblem:
    line: int
    message: str


@dataclass
class ItemResult:
    """One question's outcome; plain data so the JSON report is just `asdict`."""

    id: str
    line: int
    question: str
    expected_route: str
    route: str
    confidence: float
    answer: str
    latency_ms: float
    sources: list[str] = field(default_factory=list)
    reference: str = ""
    expected_sources: list[str] = field(default_factory=list)
    token_f1: float | None = None
    rouge_l: float | None = None
    citation_hit: bool | None = None
    key_fact_hit: bool | None = None
    degenerate_ratio: float = 0.0
    degenerate: bool = False
    fallback_reason: str = ""
    model_version: str = ""
    router_version: str = ""
    turn_id: int | None = None
    kind: str = ""  # how a domain answer was made: verified | similar | grounded | generated
    conversation: str = ""
    turn: int = 0
    depends: bool | None = None
    standalone_question: str = ""  # the follow-up as routed and answered, when context was used
    variant: str = ""  # "" as asked in its conversation; "alone": the same follow-up without it
    verdict: str = "unjudged"  # right | wrong | handed_off | unjudged (bot.evaluation.judge)
    why: str = ""  # the verdict's reason, in words
    answerable: bool = True  # the test set's word: something published or written by staff answers it
    repeated_previous: bool = False  # a follow-up answered with the text of the turn before it
    evidence: float | None = None  # what the shown answer rests on (bot.handoff)
    # Every draft the answer-or-hand-off decision weighed, each judged: route, kind, evidence,
    # shown, verdict (what `eval --calibrate` records).
    considered: list[dict[str, Any]] = field(default_factory=list)

    @property
    def route_correct(self) -> bool:
        return self.route == self.expected_route


def parse_line(raw: str, line: int) -> list[EvalItem]:
    """One JSONL line → its test items (one question, or the turns of a conversation)."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    if "turns" not in data:
        return [parse_item(data, line)]
    unknown = sorted(set(data) - set(CONVERSATION_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown} in a conversation; use {list(CONVERSATION_FIELDS)}")
    turns = data["turns"]
    if not isinstance(turns, list) or not turns or not all(isinstance(t, dict) for t in turns):
        raise ValueError("'turns' must be a non-empty list of questions (objects)")
    conversation = data.get("id", f"line-{line}")
    if not isinstance(conversation, str | int) or isinstance(conversation, bool):
        raise ValueError("'id' must be a string or a number")
    items = []
    for number, turn in enumerate(turns):
        unknown = sorted(set(turn) - set(TURN_FIELDS))
        if unknown:
            raise ValueError(f"turn {number + 1}: unknown field(s) {unknown}; use {list(TURN_FIELDS)}")
        depends = turn.get("depends")
        if depends is not None and not isinstance(depends, bool):
            raise ValueError(f"turn {number + 1}: 'depends' must be true or false")
        if number == 0 and depends:
            raise ValueError("turn 1: a conversation's first question cannot depend on earlier ones")
        try:
            item = parse_item({k: v for k, v in turn.items() if k != "depends"} | {"id": f"{conversation}#{number + 1}"},
                              line)
        except ValueError as exc:
            raise ValueError(f"turn {number + 1}: {exc}") from None
        items.append(dataclasses.replace(item, conversation=str(conversation), turn=number,
                                         depends=depends if number else False))
    return items


def parse_item(data: dict[str, Any], line: int) -> EvalItem:
    """One question's fields → a test item; ValueError says what is wrong in words a person can fix."""
    unknown = sorted(set(data) - set(KNOWN_FIELDS))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; use {list(KNOWN_FIELDS)}")
    question = data.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("'question' must be a non-empty string")
    route = data.get("expected_route")
    if route not in ROUTES:
        raise ValueError(f"'expected_route' must be one of {list(ROUTES)}, got {route!r}")
    reference = data.get("reference", "")
    if not isinstance(reference, str):
        raise ValueError("'reference' must be a string")
    sources = data.get("expected_source", [])
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not all(isinstance(s, str) and s.strip() for s in sources):
        raise ValueError("'expected_source' must be a file name or a list of file names")
    key_facts = data.get("key_fact", [])
    if isinstance(key_facts, str):
        key_facts = [key_facts]
    if not isinstance(key_facts, list) or not all(isinstance(f, str) and f.strip() for f in key_facts):
        raise ValueError("'key_fact' must be a short text (a price, a duration, \"do not ship\") or a list of them")
    item_id = data.get("id", f"line-{line}")
    if not isinstance(item_id, str | int) or isinstance(item_id, bool):
        raise ValueError("'id' must be a string or a number")
    key = parse_key(data)
    return EvalItem(
        line=line,
        id=str(item_id),
        question=question.strip(),
        expected_route=route,
        reference=reference.strip(),
        expected_sources=tuple(s.strip() for s in sources),
        key_facts=tuple(f.strip() for f in key_facts),
        key=key,
    )


def load_testset(path: Path) -> tuple[list[EvalItem], list[LineProblem]]:
    """Valid items and the problems of the lines that were skipped (blank and # lines are fine)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidTestSet(f"test set not found: {path}") from None
    except UnicodeDecodeError:
        raise InvalidTestSet(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise InvalidTestSet(f"{path}: cannot read it ({exc.strerror})") from None
    items: list[EvalItem] = []
    problems: list[LineProblem] = []
    seen_ids: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            parsed = parse_line(raw, number)
            for item in parsed:
                if item.id in seen_ids:
                    raise ValueError(f"id {item.id!r} is already used on line {seen_ids[item.id]}")
        except ValueError as exc:
            problems.append(LineProblem(number, str(exc)))
            log.debug("%s:%d: skipped: %s", path, number, exc)  # callers show problems to people
            continue
        for item in parsed:
            seen_ids[item.id] = number
            items.append(item)
    if not items:
        detail = f" ({len(problems)} malformed line(s), first: line {problems[0].line}: {problems[0].message})" if problems else ""
        raise InvalidTestSet(f"{path}: no usable test items{detail}")
    return items, problems


def source_matches(cited_path: str, expected: str) -> bool:
    """A cited path matches an expected file name by its trailing path parts.

    Test sets name files as ops know them ("shipping.md", "policies/returns.md"); sources
    carry whatever path the indexer stored (absolute or relative to the knowledge folder).
    """
    cited = PurePosixPath(cited_path.replace("\\", "/")).parts
    wanted = PurePosixPath(expected.replace("\\", "/")).parts
    return bool(wanted) and tuple(cited[-len(wanted) :]) == tuple(wanted)


def evaluate_item(
    pipeline: Pipeline, item: EvalItem, run_id: str, degenerate_threshold: float, degenerate_ngram: int,
    alone: bool = False,
) -> ItemResult:
    """One question through the pipeline; the turns of a conversation share its key, so a follow-up
    is read with them (`alone`: the same follow-up in a conversation of its own)."""
    if alone:
        conversation_key = f"eval:{run_id}:alone:{item.id}"
    elif item.conversation:
        conversation_key = f"eval:{run_id}:conversation:{item.conversation}"
    else:
        conversation_key = f"eval:{run_id}:question:{item.id}"
    ctx = AskContext(channel=EVAL_CHANNEL, user="eval", conversation_key=conversation_key, event_id=item.id)
    started = time.perf_counter()
    answer = pipeline.answer(item.question, ctx)
    latency_ms = (time.perf_counter() - started) * 1000
    ratio = degenerate_ratio(answer.text, degenerate_ngram)
    policy = GuardPolicy(degenerate_ngram_size=degenerate_ngram, degenerate_ngram_ratio=degenerate_threshold)
    degenerate = bool(degenerate_reason(answer.text, policy))
    cited = [src.path or src.url or src.title for src in answer.sources]
    result = ItemResult(
        id=item.id,
        line=item.line,
        question=item.question,
        expected_route=item.expected_route,
        route=answer.route,
        confidence=answer.confidence,
        answer=answer.text,
        latency_ms=round(latency_ms, 1),
        sources=cited,
        reference=item.reference,
        expected_sources=list(item.expected_sources),
        degenerate_ratio=round(ratio, 4),
        degenerate=degenerate,
        fallback_reason=answer.fallback_reason,
        model_version=answer.model_version,
        router_version=answer.router_version,
        turn_id=answer.turn_id,
        kind=answer.kind,
        conversation=item.conversation,
        turn=item.turn,
        depends=item.depends,
        standalone_question=answer.standalone_question,
        variant=ALONE if alone else "",
        answerable=item.key.answerable,
    )
    judgement = judge_answer(answer.text, handed_off=answer.route == "escalate", expected_route=item.expected_route,
                             key=item.key, key_facts=item.key_facts, degenerate=degenerate)
    result.verdict, result.why = judgement.verdict, judgement.why
    result.evidence = answer.evidence
    for draft in answer.considered:
        weighed = judge_answer(draft["text"], handed_off=False, expected_route=item.expected_route, key=item.key,
                               key_facts=item.key_facts, degenerate=bool(degenerate_reason(draft["text"], policy)))
        result.considered.append({k: draft[k] for k in ("route", "kind", "evidence", "shown")}
                                 | {"verdict": weighed.verdict, "text": draft["text"][:500]})
    if item.reference:
        # A looping answer can share many words with the reference; it still failed the customer.
        result.token_f1 = 0.0 if degenerate else round(token_f1(answer.text, item.reference), 4)
        result.rouge_l = 0.0 if degenerate else round(rouge_l(answer.text, item.reference), 4)
    if item.key_facts:
        result.key_fact_hit = not degenerate and states_key_fact(answer.text, item.key_facts)
    if item.expected_sources:
        result.citation_hit = any(
            source_matches(path, expected) for path in cited for expected in item.expected_sources
        )
    return result


def run_evaluation(
    pipeline: Pipeline,
    items: list[EvalItem],
    *,
    on_progress: ProgressCallback | None = None,
    degenerate_threshold: float = DEGENERATE_THRESHOLD,
    degenerate_ngram: int = DEGENERATE_NGRAM,
) -> list[ItemResult]:
    """Answer every item in order, then every follow-up again on its own (variant "alone", so the
    report can show what the conversation added); `on_progress(done, total)` after each answer."""
    run_id = uuid.uuid4().hex[:12]
    results: list[ItemResult] = []
    follow_ups = [item for item in items if item.turn > 0]
    total = evaluation_size(items)
    for done, item in enumerate(items, start=1):
        result = evaluate_item(pipeline, item, run_id, degenerate_threshold, degenerate_ngram)
        previous = results[-1] if results else None
        if item.turn > 0 and previous is not None and previous.conversation == item.conversation:
            result.repeated_previous = result.route != "escalate" and _same_text(result.answer, previous.answer)
        results.append(result)
        if on_progress is not None:
            on_progress(done, total)
    for done, item in enumerate(follow_ups, start=len(items) + 1):
        results.append(evaluate_item(pipeline, item, run_id, degenerate_threshold, degenerate_ngram, alone=True))
        if on_progress is not None:
            on_progress(done, total)
    return results


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


def evaluation_size(items: list[EvalItem]) -> int:
    """Answers a run gives: every item, and every follow-up once more on its own."""
    return len(items) + sum(item.turn > 0 for item in items)
