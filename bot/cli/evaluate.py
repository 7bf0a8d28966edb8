"""`supportbot eval`: score the full pipeline on a test set and compare with an earlier run."""

from __future__ import annotations

import logging
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)


def evaluate(
    ctx: typer.Context,
    testset: Annotated[Path, typer.Argument(help="JSONL test set: question, expected_route, reference, expected_source.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default: <state_dir>/eval/<timestamp>).")
    ] = None,
    compare: Annotated[
        Path | None, typer.Option("--compare", help="report.json of an earlier run to compare with.")
    ] = None,
    calibrate: Annotated[
        Path | None,
        typer.Option("--calibrate", help="Answer with the answer-or-hand-off decision open, judge every draft, and "
                     "write each one's kind, evidence and verdict to this file (answering.calibration_file reads it)."),
    ] = None,
    degenerate_threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of repeated word n-grams above which an answer counts as degenerate "
            "(default: domain.degenerate_ngram_ratio, the serving guard's limit).",
        ),
    ] = None,
) -> None:
    """Run every test-set question through the full pipeline; write report.md, report.json and charts.

    Judges every answer right, wrong or handed off from the items' accept/reject keys and leads with the resolution rate (right answers among questions a bot should answer) and the wrong-answer rate (wrong among answers given), per route, per answer kind and for conversation turns, wrong answers listed first. Also reports route accuracy, token F1, ROUGE-L, citation hits, escalations, degenerate answers and latency per route. Malformed lines are reported with their line number and skipped. Turns are logged with channel "eval".
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bot.cli.context import cli_context, console, err_console
    from bot.evaluation.report import compare_reports, load_report, summarize, write_report
    from bot.evaluation.runner import evaluation_size, load_testset, run_evaluation
    from bot.factory import build_runtime

    settings = cli_context(ctx).settings()
    threshold = settings.domain.degenerate_ngram_ratio if degenerate_threshold is None else degenerate_threshold
    old_report = load_report(compare) if compare is not None else None  # fail before loading models
    items, problems = load_testset(testset)
    for problem in problems:
        err_console.print(
            f"[yellow]{testset}:{problem.line}: skipped: {problem.message}[/yellow]", highlight=False, soft_wrap=True
        )
    created = datetime.now(UTC)
    out_dir = out or settings.state_dir / "eval" / created.strftime("%Y%m%d-%H%M%S")

    with console.status("Loading models and the knowledge base..."):
        runtime = build_runtime(settings, watch=False, open_gate=calibrate is not None)
        runtime.warm_up_domain()  # as Slack and Rasa do: no question's latency includes loading the model
    # While the bar runs it is the output: per-answer INFO lines would bury it (-v keeps them).
    bot_log = logging.getLogger("bot")
    previous_level = bot_log.level
    if not cli_context(ctx).verbose:
        bot_log.setLevel(logging.WARNING)
    try:
        with Progress(
            TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=err_console, transient=True,
        ) as progress:
            task = progress.add_task("eval", total=evaluation_size(items))
            results = run_evaluation(
                runtime.pipeline,
                items,
                on_progress=lambda done, total: progress.update(task, completed=done),
                degenerate_threshold=threshold,
                degenerate_ngram=settings.domain.degenerate_ngram_size,
            )
    finally:
        bot_log.setLevel(previous_level)
        runtime.close()

    report = summarize(
        results,
        problems,
        testset=str(testset),
        created=created.isoformat(timespec="seconds"),
        command="supportbot " + shlex.join(sys.argv[1:]),
        degenerate_threshold=threshold,
        degenerate_ngram=settings.domain.degenerate_ngram_size,
    )
    comparison = compare_reports(old_report, report, old_label=str(compare)) if old_report is not None else None
    written = write_report(report, out_dir, comparison)
    if calibrate is not None:
        _write_calibration(calibrate, results, testset, created, settings.answering.wrong_answer_budget)

    routing, quality, judged = report["routing"], report["quality"]["all"], report["judged"]["all"]
    console.print(
        f"resolution {_pct(judged['resolution_rate'])} ({judged['right_answers']} right of {judged['should_answer']} "
        f"a bot should answer), wrong answers {judged['wrong']} of {judged['answered']} given "
        f"({_pct(judged['wrong_rate'], 1)}), handed off {judged['handed_off']}"
        + (f", unjudged {judged['unjudged']}" if judged["unjudged"] else ""),
        highlight=False,
        soft_wrap=True,
    )
    for route, row in report["judged"]["by_answering_route"].items():
        console.print(f"  {route} answers: {row['answered']}, wrong {row['wrong']} ({_pct(row['wrong_rate'], 1)})",
                      highlight=False, soft_wrap=True)
    console.print(
        f"{report['counts']['items']} questions: route accuracy {routing['accuracy']:.0%}, macro-F1 {routing['macro_f1']:.2f}, "
        f"escalated {report['escalation']['escalated']} (missed {report['escalation']['missed']}), "
        f"degenerate {report['degenerate']['count']}",
        highlight=False,
        soft_wrap=True,
    )
    if quality["token_f1"] is not None:
        console.print(f"token F1 {quality['token_f1']:.3f}, ROUGE-L {quality['rouge_l']:.3f}", highlight=False, soft_wrap=True)
    if quality["citation_hit_rate"] is not None:
        console.print(f"citation hit rate {quality['citation_hit_rate']:.0%}", highlight=False, soft_wrap=True)
    conv = report.get("conversations")
    if conv:
        first, with_ctx, alone = conv["first_turns"], conv["follow_ups"]["with_context"], conv["follow_ups"]["alone"]
        console.print(
            f"{conv['conversations']} conversations: route accuracy first turns {_pct(first['route_accuracy'])}, "
            f"follow-ups {_pct(with_ctx['route_accuracy'])} with the conversation ({_pct(alone['route_accuracy'])} on "
            f"their own); resolution first turns {_pct(first.get('resolution_rate'))}, follow-ups "
            f"{_pct(with_ctx.get('resolution_rate'))} ({_pct(alone.get('resolution_rate'))} on their own); follow-ups "
            f"answered with the previous answer again: {with_ctx.get('repeated_previous', 0)}",
            highlight=False, soft_wrap=True,
        )
    if comparison is not None:
        better = sum(m["verdict"] == "better" for m in comparison["metrics"])
        worse = sum(m["verdict"] == "worse" for m in comparison["metrics"])
        console.print(f"vs {compare}: {better} metric(s) better, {worse} worse, "
                      f"{len(comparison['changed_items'])} question(s) changed", highlight=False, soft_wrap=True)
    if problems:
        console.print(f"[yellow]{len(problems)} malformed line(s) skipped (listed in the report)[/yellow]")
    console.print(f"report: {written['markdown']}  (data: {written['json']})", highlight=False, soft_wrap=True)


def _write_calibration(path: Path, results: list, testset: Path, created: datetime, budget: float) -> None:
    """The judged drafts as calibration records, and the thresholds they give for the budget."""
    from bot.cli.context import console
    from bot.evaluation.calibration import calibration_records, gate_for, merge_calibration

    records = merge_calibration(path, calibration_records(results), str(testset), created.isoformat(timespec="seconds"))
    console.print(f"calibration: {len(records)} judged drafts in {path}; for a {budget:.0%} wrong-answer budget: "
                  + "; ".join(gate_for(records, budget).describe()), highlight=False, soft_wrap=True)


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: float | None, decimals: int = 0) -> str:
    return "–" if value is None else f"{value:.{decimals}%}"
