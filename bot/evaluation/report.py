"""Turn per-question results into the summary, the comparison and the Markdown people read.

The JSON written beside the Markdown holds the summary and every result, so `--compare`
reads numbers, never Markdown, and a report stays comparable after the code that made it
has changed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from statistics import fmean
from typing import Any

from bot.config import ROUTES
from bot.errors import BotError
from bot.evaluation.judge import tally
from bot.evaluation.metrics import DEGENERATE_NGRAM, percentile
from bot.evaluation.runner import ALONE, ItemResult, LineProblem

# 1 → 2: every result carries a verdict (right / wrong / handed_off), and the summary its tallies.
REPORT_FORMAT = "supportbot-eval/2"
READABLE_FORMATS = ("supportbot-eval/1", REPORT_FORMAT)
F1_CHANGE_WORTH_LISTING = 0.2


class ReportError(BotError):
    """A file given to --compare is not a report this tool wrote."""


def _mean(values: list[float]) -> float | None:
    return round(fmean(values), 4) if values else None


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def routing_summary(results: list[ItemResult]) -> dict[str, Any]:
    confusion = {exp: {act: 0 for act in ROUTES} for exp in ROUTES}
    for r in results:
        confusion[r.expected_route][r.route] += 1
    per_route: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        tp = confusion[route][route]
        predicted = sum(confusion[exp][route] for exp in ROUTES)
        support = sum(confusion[route].values())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_route[route] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": support,
        }
    present = [route for route in ROUTES if per_route[route]["support"]]
    return {
        "accuracy": _rate(sum(r.route_correct for r in results), len(results)),
        # Macro-F1 over the routes the test set asks about, as the router baselines are scored.
        "macro_f1": _mean([per_route[route]["f1"] for route in present]),
        "confusion": confusion,
        "per_route": per_route,
    }


def quality_summary(results: list[ItemResult]) -> dict[str, Any]:
    with_ref = [r for r in results if r.token_f1 is not None]
    with_src = [r for r in results if r.citation_hit is not None]
    with_fact = [r for r in results if r.key_fact_hit is not None]
    return {
        "items": len(results),
        "with_reference": len(with_ref),
        "token_f1": _mean([r.token_f1 for r in with_ref if r.token_f1 is not None]),
        "rouge_l": _mean([r.rouge_l for r in with_ref if r.rouge_l is not None]),
        "with_expected_source": len(with_src),
        "citation_hit_rate": _rate(sum(bool(r.citation_hit) for r in with_src), len(with_src)),
        "with_key_fact": len(with_fact),
        # Share of answers whose first sentence states the reference's key fact (price, days, yes/no).
        "key_fact_rate": _rate(sum(bool(r.key_fact_hit) for r in with_fact), len(with_fact)),
        "degenerate": sum(r.degenerate for r in results),
    }


def judged_summary(results: list[ItemResult]) -> dict[str, Any]:
    """Right / wrong / handed off: overall, by the route the test set expects, by the route and kind
    that answered, and for the turns of conversations."""
    answered = [r for r in results if r.route != "escalate"]
    by_answer = {
        f"{r.route}/{r.kind or '-'}": tally([x for x in answered if x.route == r.route and x.kind == r.kind]).as_dict()
        for r in answered
    }
    return {
        "all": tally(results).as_dict(),
        "by_expected_route": {
            route: tally([r for r in results if r.expected_route == route]).as_dict()
            for route in ROUTES if any(r.expected_route == route for r in results)
        },
        # Which answerer gave the wrong answers: the wrong rate of each route's (and kind's) answers.
        "by_answering_route": {
            route: tally([r for r in answered if r.route == route]).as_dict()
            for route in ROUTES if route != "escalate" and any(r.route == route for r in answered)
        },
        "by_kind": dict(sorted(by_answer.items())),
    }


def latency_summary(latencies: list[float]) -> dict[str, Any]:
    if not latencies:
        return {"count": 0, "p50": None, "p95": None, "mean": None}
    return {
        "count": len(latencies),
        "p50": round(percentile(latencies, 50), 1),
        "p95": round(percentile(latencies, 95), 1),
        "mean": round(fmean(latencies), 1),
    }


def summarize(
    results: list[ItemResult],
    problems: list[LineProblem],
    *,
    testset: str,
    created: str,
    command: str,
    degenerate_threshold: float,
    degenerate_ngram: int = DEGENERATE_NGRAM,
) -> dict[str, Any]:
    """The whole report as plain data: what the JSON holds and the Markdown shows. Follow-ups
    answered again on their own (variant "alone") feed only the conversation section."""
    alone = [r for r in results if r.variant == ALONE]
    results = [r for r in results if r.variant != ALONE]
    escalated = [r for r in results if r.route == "escalate"]
    return {
        "format": REPORT_FORMAT,
        "created": created,
        "testset": testset,
        "command": command,
        "degenerate_threshold": degenerate_threshold,
        "degenerate_ngram": degenerate_ngram,
        "versions": {
            "model": sorted({r.model_version for r in results if r.model_version}),
            "router": sorted({r.router_version for r in results if r.router_version}),
        },
        "counts": {"items": len(results), "skipped_lines": len(problems)},
        "skipped": [asdict(p) for p in problems],
        "judged": judged_summary(results),
        "routing": routing_summary(results),
        "escalation": {
            "rate": _rate(len(escalated), len(results)),
            "escalated": len(escalated),
            # Worst case: a customer who needed a person got a bot answer instead.
            "missed": sum(r.expected_route == "escalate" and r.route != "escalate" for r in results),
            "unneeded": sum(r.expected_route != "escalate" and r.route == "escalate" for r in results),
        },
        "quality": {
            "all": quality_summary(results),
            **{
                route: quality_summary([r for r in results if r.expected_route == route])
                for route in ROUTES
            },
        },
        # How each route's answers were made (a domain answer: verified / similar / grounded / generated)
        # and how good each kind was: where the quality comes from, not only how much of it.
        "answer_kinds": {
            route: {
                kind or "-": quality_summary([r for r in results if r.route == route and r.kind == kind])
                for kind in sorted({r.kind for r in results if r.route == route})
            }
            for route in ROUTES
            if any(r.route == route for r in results)
        },
        "degenerate": {
            "count": sum(r.degenerate for r in results),
            "rate": _rate(sum(r.degenerate for r in results), len(results)),
        },
        "latency_ms": {
            "all": latency_summary([r.latency_ms for r in results]),
            **{route: latency_summary([r.latency_ms for r in results if r.route == route]) for route in ROUTES},
        },
        "conversations": conversation_summary(results, alone),
        "results": [asdict(r) | {"route_correct": r.route_correct} for r in results],
        "alone_results": [asdict(r) | {"route_correct": r.route_correct} for r in alone],
    }


def conversation_summary(results: list[ItemResult], alone: list[ItemResult]) -> dict[str, Any] | None:
    """First turns, and follow-ups with their conversation vs on their own, in one run; split by
    whether the test set says a follow-up depends on the earlier turns (a topic change does not)."""
    if not any(r.conversation for r in results):
        return None

    def row(rows: list[ItemResult]) -> dict[str, Any]:
        scored = [r.token_f1 for r in rows if r.token_f1 is not None]
        rouge = [r.rouge_l for r in rows if r.rouge_l is not None]
        judged = tally(rows).as_dict()
        return {"items": len(rows), "route_accuracy": _rate(sum(r.route_correct for r in rows), len(rows)),
                "token_f1": _mean(scored), "rouge_l": _mean(rouge),
                "context_used": sum(bool(r.standalone_question) for r in rows),
                "resolution_rate": judged["resolution_rate"], "wrong_rate": judged["wrong_rate"],
                "right": judged["right"], "wrong": judged["wrong"], "handed_off": judged["handed_off"],
                "repeated_previous": sum(r.repeated_previous for r in rows)}

    in_conv = [r for r in results if r.conversation]
    firsts = [r for r in in_conv if r.turn == 0]
    followups = [r for r in in_conv if r.turn > 0]
    return {
        "conversations": len({r.conversation for r in in_conv}),
        "first_turns": row(firsts),
        "follow_ups": {
            "with_context": row(followups),
            "alone": row(alone),
            "depends_with_context": row([r for r in followups if r.depends]),
            "depends_alone": row([r for r in alone if r.depends]),
            "standalone_with_context": row([r for r in followups if r.depends is False]),
            "standalone_alone": row([r for r in alone if r.depends is False]),
        },
    }


def load_report(path: Path) -> dict[str, Any]:
    """A report JSON written by `supportbot eval`, or a ReportError saying why it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"report not found: {path} (pass the report.json of an earlier run)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ReportError(f"{path}: not JSON; pass the report.json, not the Markdown") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise ReportError(f"{path}: not a supportbot eval report ({REPORT_FORMAT}); pass the report.json of an earlier run")
    return data


# --- comparison ------------------------------------------------------------------------------

# (label, path into the summary, True when higher is better, None when neither is)
COMPARED_METRICS: list[tuple[str, tuple[str, ...], bool | None]] = [
    ("resolution rate", ("judged", "all", "resolution_rate"), True),
    ("wrong-answer rate", ("judged", "all", "wrong_rate"), False),
    ("right answers", ("judged", "all", "right_answers"), True),
    ("wrong answers", ("judged", "all", "wrong"), False),
    ("handed off", ("judged", "all", "handed_off"), None),
    *[(f"resolution rate: {r}", ("judged", "by_expected_route", r, "resolution_rate"), True) for r in ROUTES
      if r != "escalate"],
    *[(f"wrong-answer rate: {r} answers", ("judged", "by_answering_route", r, "wrong_rate"), False) for r in ROUTES
      if r != "escalate"],
    ("route accuracy", ("routing", "accuracy"), True),
    ("route macro-F1", ("routing", "macro_f1"), True),
    *[(f"route F1: {r}", ("routing", "per_route", r, "f1"), True) for r in ROUTES],
    # More escalations are right when more questions need a person; missed ones are what hurt.
    ("escalation rate", ("escalation", "rate"), None),
    ("missed escalations", ("escalation", "missed"), False),
    ("degenerate answers", ("degenerate", "count"), False),
    ("token F1 (all)", ("quality", "all", "token_f1"), True),
    ("ROUGE-L (all)", ("quality", "all", "rouge_l"), True),
    *[(f"token F1: {r}", ("quality", r, "token_f1"), True) for r in ROUTES],
    *[(f"ROUGE-L: {r}", ("quality", r, "rouge_l"), True) for r in ROUTES],
    ("citation hit rate", ("quality", "all", "citation_hit_rate"), True),
    ("key fact in first sentence", ("quality", "all", "key_fact_rate"), True),
    ("latency p50 ms (all)", ("latency_ms", "all", "p50"), False),
    ("latency p95 ms (all)", ("latency_ms", "all", "p95"), False),
    *[(f"latency p95 ms: {r}", ("latency_ms", r, "p95"), False) for r in ROUTES],
]


def _dig(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def compare_reports(old: dict[str, Any], new: dict[str, Any], old_label: str = "old") -> dict[str, Any]:
    """Metric deltas and the questions whose outcome changed, matched by question text."""
    metrics = []
    for label, path, higher_is_better in COMPARED_METRICS:
        before, after = _dig(old, path), _dig(new, path)
        if before is None and after is None:
            continue
        delta = round(after - before, 4) if isinstance(before, int | float) and isinstance(after, int | float) else None
        verdict = "same"
        if delta is None:
            verdict = "n/a"
        elif delta != 0:
            verdict = "changed" if higher_is_better is None else (
                "better" if (delta > 0) == higher_is_better else "worse"
            )
        metrics.append({"metric": label, "old": before, "new": after, "delta": delta, "verdict": verdict})
    def key(row: dict[str, Any]) -> str:  # ids: a conversation repeats "and in winter?" with other meanings
        return str(row.get("id") or row["question"])

    old_items = {key(row): row for row in old.get("results", [])}
    changes = []
    for row in new.get("results", []):
        before = old_items.get(key(row))
        if before is None:
            continue
        notes = []
        if before.get("verdict") and row.get("verdict") and before["verdict"] != row["verdict"]:
            notes.append(f"{before['verdict']} → {row['verdict']}")
        if before["route"] != row["route"]:
            was = "right" if before["route"] == before["expected_route"] else "wrong"
            now = "right" if row["route"] == row["expected_route"] else "wrong"
            notes.append(f"route {before['route']} ({was}) → {row['route']} ({now})")
        if bool(before.get("degenerate")) != bool(row.get("degenerate")):
            notes.append("now degenerate" if row.get("degenerate") else "no longer degenerate")
        f1_before, f1_after = before.get("token_f1"), row.get("token_f1")
        if f1_before is not None and f1_after is not None and abs(f1_after - f1_before) >= F1_CHANGE_WORTH_LISTING:
            notes.append(f"token F1 {f1_before:.2f} → {f1_after:.2f}")
        if before.get("citation_hit") is not None and before.get("citation_hit") != row.get("citation_hit"):
            notes.append("now cites the expected source" if row.get("citation_hit") else "lost the expected source")
        if notes:
            changes.append({"question": row["question"], "changes": notes,
                            "verdict": row.get("verdict", ""), "was": before.get("verdict", "")})
    # What became wrong is what a reader must see first.
    changes.sort(key=lambda c: (c["verdict"] != "wrong" or c["was"] == "wrong", c["verdict"] != "handed_off"))
    new_questions = {key(row) for row in new.get("results", [])}
    return {
        "old_label": old_label,
        "old_created": old.get("created"),
        "old_versions": old.get("versions", {}),
        "new_versions": new.get("versions", {}),
        "metrics": metrics,
        "changed_items": changes,
        "only_in_old": len(set(old_items) - new_questions),
        "only_in_new": len(new_questions - set(old_items)),
    }


def write_report(report: dict[str, Any], out_dir: Path, comparison: dict[str, Any] | None = None) -> dict[str, Path]:
    """report.json, report.md and the PNG charts in out_dir; returns what was written."""
    from bot.atomic import atomic_write_json, atomic_write_text
    from bot.evaluation.charts import write_charts
    from bot.evaluation.markdown import render_markdown

    out_dir.mkdir(parents=True, exist_ok=True)
    charts = write_charts(report, out_dir, comparison)
    saved = dict(report)
    if comparison is not None:
        saved["comparison"] = comparison
    atomic_write_json(out_dir / "report.json", saved)
    atomic_write_text(out_dir / "report.md", render_markdown(report, charts, comparison))
    return {
        "json": out_dir / "report.json",
        "markdown": out_dir / "report.md",
        **{name: out_dir / file for name, file in charts.items()},
    }
