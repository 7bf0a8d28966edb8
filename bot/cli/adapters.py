"""`supportbot model list|promote|rollback`: the adapter versions the domain model can serve.

Promote and rollback rewrite one pointer file atomically; the running bot notices and
hot-reloads, so these commands are how ops overrule the training gate or undo a bad week.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

model_app = typer.Typer(help="List, promote and roll back fine-tuned adapter versions.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


def _metric(meta: dict[str, Any], name: str) -> str:
    value = meta.get("metrics", {}).get("candidate", {}).get(name)
    return f"{value:.3g}" if isinstance(value, (int, float)) else "-"


@model_app.command("list")
def list_versions(ctx: typer.Context) -> None:
    """Show every adapter version with its metrics and gate verdict; * marks the served one."""
    from rich.table import Table

    from bot.cli.context import cli_context, console
    from bot.registry import adapter_registry

    settings = cli_context(ctx).settings()
    registry = adapter_registry(settings)
    versions = registry.list()
    if not versions:
        console.print("no adapter versions yet: run `supportbot train run` (the base model is served)")
        console.print(may_answer_line(settings, None), highlight=False, soft_wrap=True)
        return
    current = registry.current_version()
    table = Table("", "version", "created", "data", "perplexity", "token F1", "judged right/wrong", "degenerate",
                  "GGUF", "gate")
    for v in versions:
        meta = v.metadata
        gate = meta.get("gate", {})
        verdict = "passed" if gate.get("promote") else ("rejected" if gate else "-")
        gguf = meta.get("gguf") or {}
        agreement = gguf.get("agreement")
        gguf_cell = f"{gguf.get('status', '-')}" + (f" {agreement:.2f}" if agreement is not None else "")
        table.add_row(
            "*" if v.version == current else "",
            v.version,
            str(meta.get("created_at", "-")),
            str(meta.get("data_hash", "-"))[:10],
            _metric(meta, "perplexity"),
            _metric(meta, "token_f1"),
            _judged(meta),
            _metric(meta, "degenerate_rate"),
            gguf_cell,
            verdict,
        )
    console.print(table)
    if current is None:
        console.print("no version promoted: the base model is served")
    served = next((v for v in versions if v.version == current), None)
    console.print(may_answer_line(settings, served.metadata if served else None), highlight=False, soft_wrap=True)


def _judged(meta: dict[str, Any]) -> str:
    candidate = meta.get("metrics", {}).get("candidate", {})
    right, wrong = candidate.get("judged_right"), candidate.get("judged_wrong")
    return f"{right}/{wrong}" if isinstance(right, int) and isinstance(wrong, int) else "-"


def may_answer_line(settings: Any, served_meta: dict[str, Any] | None) -> str:
    """Whether the served model's own words reach customers, and why (domain.model_answers and its judged answers)."""
    mode = settings.domain.model_answers
    budget = settings.answering.wrong_answer_budget
    candidate = (served_meta or {}).get("metrics", {}).get("candidate", {})
    right, wrong = candidate.get("judged_right"), candidate.get("judged_wrong")
    measured = ""
    if isinstance(right, int) and isinstance(wrong, int) and right + wrong:
        rate = wrong / (right + wrong)
        measured = (f" On its held-out labelled questions it answered {right} right and {wrong} wrong ({rate:.0%} wrong; "
                    f"the budget is {budget:.0%}: {'within' if rate <= budget else 'over'} it).")
    if mode == "never":
        return ("The model does not answer customers on its own (domain.model_answers = \"never\"): plant-care "
                "answers are expert entries as written, or a hand-off." + measured +
                " Set it to \"checked\" or \"always\" only for a model that `supportbot eval` shows within the budget.")
    return (f"The model may answer customers (domain.model_answers = \"{mode}\"" +
            (", only when the expert entries back its answer" if mode == "checked" else "") + ")." + measured +
            " `supportbot eval` reports its grounded/generated answers' wrong-answer rate on your test set.")


@model_app.command("promote")
def promote(ctx: typer.Context, version: Annotated[str, typer.Argument(help="Version to serve, e.g. v0003.")]) -> None:
    """Serve VERSION (even one the gate rejected, never one whose GGUF copy failed its check).

    The running bot hot-reloads it.
    """
    from bot.cli.context import cli_context, console
    from bot.registry import adapter_registry

    registry = adapter_registry(cli_context(ctx).settings())
    registry.promote(version)
    console.print(f"[green]serving {version}[/green]")


@model_app.command("rollback")
def rollback(ctx: typer.Context) -> None:
    """Serve the version promoted before the current one (or the base model if none)."""
    from bot.cli.context import cli_context, console
    from bot.registry import adapter_registry

    previous = adapter_registry(cli_context(ctx).settings()).rollback()
    console.print(f"[green]serving {previous or 'the base model (no adapter)'}[/green]")
