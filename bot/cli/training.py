"""`supportbot train export|run|schedule`: the weekly loop from staff labels to a better adapter."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

train_app = typer.Typer(help="Export training data, fine-tune, evaluate and promote adapters.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")


@train_app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder to write (default: "
                                             "<state_dir>/training/export).")] = None,
) -> None:
    """Write the redacted, de-duplicated train/eval split and its data report.

    Reads staff-labeled turns from the conversation log plus training.seed_dataset. Nothing is
    trained; use this to review what the next run would learn from.
    """
    from bot.cli.context import cli_context, console
    from bot.conversation_log.opening import open_store
    from training.dataset import export_dataset, render_data_report

    settings = cli_context(ctx).settings()
    target = out or settings.state_dir / "training" / "export"
    store = open_store(settings)
    try:
        result = export_dataset(settings, store, target)
    finally:
        store.close()
    console.print(render_data_report(result.report, result.data_hash), markup=False, highlight=False)
    console.print(f"[green]wrote[/green] {result.train_path} and {result.eval_path}")


@train_app.command("run")
def run(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Train even if fewer than training.min_new_labels "
                                        "new staff labels arrived since the last run.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Export → fine-tune → evaluate → gate → promote → retrain the router, once.

    The candidate adapter is promoted only if it beats the served one (see the [training] gate
    settings); either way a report is written. Exit code 0 when promoted or kept, 1 on failure.
    """
    from bot.cli.context import cli_context, console
    from training.run import run_training

    settings = cli_context(ctx).settings()
    outcome = run_training(settings, force=force, progress=sys.stderr.isatty())
    if as_json:
        sys.stdout.write(json.dumps({
            "status": outcome.status, "promoted": outcome.promoted, "version": outcome.version,
            "summary": outcome.summary, "report_path": str(outcome.report_path or ""),
            "metrics": outcome.metrics,
        }) + "\n")
    else:
        colour = {"promoted": "green", "rejected": "yellow", "skipped": "dim"}.get(outcome.status, "red")
        console.print(f"[{colour}]{outcome.status}[/{colour}] {outcome.summary}", highlight=False)
        if outcome.report_path:
            console.print(f"report: {outcome.report_path}")
    if outcome.status in ("failed", "busy"):
        raise typer.Exit(1)


@train_app.command("schedule")
def schedule(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Check once now and exit (for an external "
                                       "cron or a Kubernetes CronJob).")] = False,
) -> None:
    """Check on training.schedule_cron and train when enough new staff labels arrived.

    Runs until Ctrl-C. Results go to slack.staff_channel when SLACK_BOT_TOKEN is set.
    """
    from bot.cli.context import cli_context, console
    from training.scheduler import run_schedule, run_scheduled_check, slack_notifier

    settings = cli_context(ctx).settings()
    notify = slack_notifier(settings)
    if once:
        outcome = run_scheduled_check(settings, notify=notify)
        console.print(f"{outcome.status}: {outcome.summary}", highlight=False)
        return
    console.print(f"training schedule: cron {settings.training.schedule_cron!r}, at least "
                  f"{settings.training.min_new_labels} new staff labels; Ctrl-C to stop")
    try:
        run_schedule(settings, notify=notify)
    except KeyboardInterrupt:
        console.print("stopped")
