"""`supportbot router`: retrain the router and see why it routes a question the way it does."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

import typer

log = logging.getLogger(__name__)

router_app = typer.Typer(help="Train the router and explain its decisions.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(router_app, name="router")


def open_knowledge(settings: Any, embedder: Any) -> Any:
    """The knowledge base for the KB signals, or None (with a warning) when it cannot open:
    routing and training still work on the question alone."""
    from bot.errors import BotError
    from bot.indexing.knowledge_base import build_knowledge_base

    try:
        knowledge = build_knowledge_base(settings, embedder)
        knowledge.sync()
    except BotError as exc:
        log.warning("knowledge base unavailable (%s); continuing without KB signals", exc)
        return None
    return knowledge


def _close(resource: Any) -> None:
    closer = getattr(resource, "close", None)
    if callable(closer):
        closer()


@router_app.command("train")
def train(
    ctx: typer.Context,
    no_promote: Annotated[
        bool, typer.Option("--no-promote", help="Save the new version without serving it.")
    ] = False,
    no_kb: Annotated[bool, typer.Option("--no-kb", help="Train without knowledge-base signals.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Retrain from the seed file and staff route labels; report cross-validated accuracy,
    the per-route confusion matrix, and the version saved (the running bot picks it up)."""
    from bot.cli.context import cli_context, console
    from bot.conversation_log.opening import open_store
    from bot.model_assets import force_offline, load_embedder
    from training.router_training import train_router

    settings = cli_context(ctx).settings()
    force_offline()
    with console.status("Loading the embedder...") as status:
        embedder = load_embedder(settings)
        knowledge = None
        if not no_kb:
            status.update("Opening the knowledge base...")
            knowledge = open_knowledge(settings, embedder)
        store = open_store(settings)
        try:
            report = train_router(
                settings, embedder=embedder, store=store, promote=not no_promote,
                knowledge=knowledge, progress=lambda message: status.update(message.capitalize() + "..."),
            )
        finally:
            store.close()
            _close(knowledge)
    if as_json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
        return
    print_training_report(console, report)


def print_training_report(console: Any, report: Any) -> None:
    from rich.table import Table

    sources = ", ".join(f"{n} {src}" for src, n in sorted(report.examples_by_source.items()))
    console.print(f"Trained on {sources} examples in {report.n_topics} topics "
                  f"({report.duration_s:.1f}s).")
    console.print(f"Cross-validated accuracy [bold]{report.cv_accuracy:.3f}[/bold], "
                  f"macro-F1 [bold]{report.cv_macro_f1:.3f}[/bold]")
    table = Table(title="Confusion matrix (rows: true route, columns: predicted)")
    table.add_column("true \\ predicted")
    for route in report.routes:
        table.add_column(route, justify="right")
    table.add_column("F1", justify="right")
    for route, row in zip(report.routes, report.confusion, strict=True):
        f1 = report.per_route_f1.get(route)
        table.add_row(route, *(str(n) for n in row), f"{f1:.3f}" if f1 is not None else "-")
    console.print(table)
    signals = ["question embedding (topics, neighbours)", "nearest-example similarity"]
    if report.used_domain_signal:
        signals.append("domain similarity")
    if report.used_kb_signals:
        signals.append("KB best score and margin")
    console.print(f"Signals: {', '.join(signals)}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    state = "promoted: the running bot switches to it within seconds" if report.promoted else "not promoted"
    console.print(f"Saved router [bold]{report.version}[/bold] ({state}).")


@router_app.command("explain")
def explain(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The customer's question.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
    no_kb: Annotated[bool, typer.Option("--no-kb", help="Skip the knowledge-base signals.")] = False,
) -> None:
    """Show the route probabilities, the topics and examples that matched, and the signals."""
    from bot.cli.context import cli_context, console
    from bot.model_assets import force_offline, load_embedder
    from bot.registry import router_registry
    from bot.router import TopicRouter

    settings = cli_context(ctx).settings()
    force_offline()
    if not question.strip():
        raise typer.BadParameter("the question is empty", param_hint="QUESTION")
    with console.status("Loading the router..."):
        embedder = load_embedder(settings)
        knowledge = None if no_kb else open_knowledge(settings, embedder)
        try:
            router = TopicRouter(settings.router, router_registry(settings), embedder=embedder, knowledge=knowledge)
            details = router.explain(question)
        finally:
            _close(knowledge)
    if as_json:
        sys.stdout.write(json.dumps(details, ensure_ascii=False) + "\n")
        return
    print_explanation(console, details)


def print_explanation(console: Any, details: dict[str, Any]) -> None:
    from rich.table import Table

    route = details["route"]
    threshold = details["thresholds"].get(route, 0.0)
    verdict = "accepted" if details["confidence"] >= threshold else "below threshold: fallback order applies"
    console.print(f"Route [bold]{route}[/bold] p={details['confidence']:.2f} "
                  f"(threshold {threshold:.2f}, {verdict})", highlight=False)
    console.print(f"Reason: {details['reason']}", highlight=False, markup=False)
    version = details["version"] + (" (zero-shot: no trained router yet)" if details["zero_shot"] else "")
    console.print(f"Router version: {version}", highlight=False)
    probs = Table(title="Route probabilities")
    probs.add_column("route")
    probs.add_column("final", justify="right")
    probs.add_column("calibrated", justify="right")
    probs.add_column("topic sum", justify="right")
    for name, p in details["probabilities"].items():
        probs.add_row(name, f"{p:.3f}", f"{details['calibrated_before_scope_guard'][name]:.3f}",
                      f"{details['topic_probabilities_by_route'][name]:.3f}")
    console.print(probs)
    topics = Table(title="Top topics")
    for col in ("topic", "route", "probability", "best similarity"):
        topics.add_column(col, justify="right" if col in ("probability", "best similarity") else "left")
    for t in details["top_topics"]:
        topics.add_row(t["topic"], t["route"], f"{t['probability']:.3f}", f"{t['similarity']:.3f}")
    console.print(topics)
    neighbours = Table(title="Nearest labelled examples")
    for col in ("similarity", "topic", "example"):
        neighbours.add_column(col)
    for n in details["nearest_examples"]:
        neighbours.add_row(f"{n['similarity']:.3f}", n["topic"], n["text"])
    console.print(neighbours)
    signals = Table(title="Signals")
    signals.add_column("signal")
    signals.add_column("value", justify="right")
    for name, value in details["signals"].items():
        signals.add_row(name, f"{value:.3f}")
    console.print(signals)
