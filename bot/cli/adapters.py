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

    registry = adapter_registry(cli_context(ctx).settings())
    versions = registry.list()
    if not versions:
        console.print("no adapter versions yet: run `supportbot train run` (the base model is served)")
        return
    current = registry.current_version()
    table = Table("", "version", "created", "data", "perplexity", "token F1", "degenerate", "GGUF", "gate")
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
            _metric(meta, "degenerate_rate"),
            gguf_cell,
            verdict,
        )
    console.print(table)
    if current is None:
        console.print("no version promoted: the base model is served")


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
