"""`supportbot index` and `supportbot search`: keep the knowledge base current and look inside it.

Ops run `index` after editing knowledge/ when the bot is not running (a running bot re-indexes
by itself), and `search` to see what a question will find, with the scores the router and the
retrieval answerer compare with `knowledge.min_score`.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from bot.config import Settings


def register(app: typer.Typer) -> None:
    app.command("index")(index)
    app.command("search")(search)


def _open_knowledge_base(settings: Settings) -> Any:
    from bot.indexing.knowledge_base import build_knowledge_base
    from bot.model_assets import force_offline, load_embedder
    from bot.state_check import check_state_at_start

    force_offline()
    check_state_at_start(settings, conversation_log=False, registries=False)
    return build_knowledge_base(settings, load_embedder(settings))


def index(
    ctx: typer.Context,
    full: Annotated[bool, typer.Option("--full", help="Drop the index and rebuild it from every file.")] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit with status 1 when any file was skipped (for CI checks).")
    ] = False,
) -> None:
    """Index the knowledge folder: only new and changed files are embedded; removed files are dropped."""
    from bot.cli.context import cli_context, console

    kb = _open_knowledge_base(cli_context(ctx).settings())
    try:
        report = kb.sync(progress=sys.stderr.isatty(), full=full)
    finally:
        kb.close()
    for label, paths, colour in (
        ("added", report.added, "green"),
        ("updated", report.updated, "yellow"),
        ("removed", report.removed, "red"),
    ):
        for path in paths:
            console.print(f"[{colour}]{label:>8}[/{colour}]  {path}", highlight=False)
    for path in report.skipped:
        console.print(f"[magenta] skipped[/magenta]  {path}: {report.reasons.get(path, '')}", highlight=False)
    console.print(report.summary(), highlight=False)
    if strict and report.skipped:
        raise typer.Exit(1)


def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="What a customer would ask, or an exact code such as a SKU.")],
    k: Annotated[int | None, typer.Option("-k", "--top", min=1, help="How many chunks to show (default knowledge.top_k).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the best-matching chunks with their scores and citations (does not re-index)."""
    from bot.cli.context import cli_context, console, err_console

    kb = _open_knowledge_base(cli_context(ctx).settings())
    try:
        hits = kb.search(query, k)
        empty = len(kb) == 0
        min_score = kb.config.min_score
    finally:
        kb.close()
    if as_json:
        rows = [
            {"chunk_id": h.chunk_id, "score": h.score, "dense_score": h.dense_score,
             "lexical_score": h.lexical_score, "text": h.text, "source": h.source.__dict__}
            for h in hits
        ]
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    if empty:
        err_console.print("The knowledge index is empty: run `supportbot index` first.")
        raise typer.Exit(1)
    for rank, hit in enumerate(hits, start=1):
        src = hit.source
        mark = "green" if hit.score >= min_score else "dim"
        heading = f" > {src.heading}" if src.heading else ""
        updated = f", updated {src.updated}" if src.updated else ""
        console.print(
            f"[bold]{rank}.[/bold] [{mark}]score {hit.score:.3f}[/{mark}] "
            f"(dense {hit.dense_score:.3f}, lexical {hit.lexical_score:.3f})  "
            f"{src.title}{heading} - {src.url or src.path}{updated}",
            highlight=False,
        )
        console.print(f"    {_one_line(hit.text, 300)}", markup=False, highlight=False)
    if not hits or hits[0].score < min_score:
        console.print(
            f"[dim]best score is below knowledge.min_score ({min_score:.2f}): the bot would say it did "
            "not find the answer and hand over to a person[/dim]"
        )


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
