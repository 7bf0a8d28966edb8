"""Load a JSONL test set and run every question through the same `Pipeline.answer` customers hit.

A malformed line is reported with its line number and skipped: one typo in a 300-line test
set should cost that line, not the whole run.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bot.answer import AskContext
from bot.config import ROUTES
from bot.errors import BotError
from bot.evaluation.metrics import (
    DEGENERATE_NGRAM,
    DEGENERATE_THRESHOLD,
    degenerate_ratio,
    rouge_l,
    states_key_fact,
    token_f1,
)
from bot.llm.guard import GuardPolicy, degenerate_reason
from bot.pipeline import Pipeline

log = logging.getLogger(__name__)

EVAL_CHANNEL = "eval"
KNOWN_FIELDS = ("id", "question", "expected_route", "reference", "expected_source", "key_fact", "notes")

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
    kind: str = ""  # how a domain answer was made: verified | grounded | generated

    @property
    def route_correct(self) -> bool:
        return self.route == self.expected_route


def parse_item(raw: str, line: int) -> EvalItem:
    """One JSONL line → a test item; ValueError says what is wrong in words a person can fix."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
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
    return EvalItem(
        line=line,
        id=str(item_id),
        question=question.strip(),
        expected_route=route,
        reference=reference.strip(),
        expected_sources=tuple(s.strip() for s in sources),
        key_facts=tuple(f.strip() for f in key_facts),
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
            item = parse_item(raw, number)
            if item.id in seen_ids:
                raise ValueError(f"id {item.id!r} is already used on line {seen_ids[item.id]}")
        except ValueError as exc:
            problems.append(LineProblem(number, str(exc)))
            log.debug("%s:%d: skipped: %s", path, number, exc)  # callers show problems to people
            continue
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
    pipeline: Pipeline, item: EvalItem, run_id: str, degenerate_threshold: float, degenerate_ngram: int
) -> ItemResult:
    ctx = AskContext(
        channel=EVAL_CHANNEL, user="eval", conversation_key=f"eval:{run_id}:{item.id}", event_id=item.id
    )
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
    )
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
    """Answer every item in order; `on_progress(done, total)` after each so a CLI can draw a bar."""
    run_id = uuid.uuid4().hex[:12]
    results: list[ItemResult] = []
    for done, item in enumerate(items, start=1):
        results.append(evaluate_item(pipeline, item, run_id, degenerate_threshold, degenerate_ngram))
        if on_progress is not None:
            on_progress(done, len(items))
    return results


def results_from_json(rows: list[dict[str, Any]]) -> list[ItemResult]:
    """Rebuild results from a saved report (used by --compare)."""
    names = set(ItemResult.__dataclass_fields__)
    return [ItemResult(**{k: v for k, v in row.items() if k in names}) for row in rows]
