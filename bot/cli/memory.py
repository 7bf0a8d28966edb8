"""`supportbot memory list | search | remove`: what the bot answers as written, and why.

Staff see the entries behind verified answers, check what a question would match (and whether
the match is close enough to be given as written), and withdraw a staff entry. Removing is a
retraction in the log, so every replica drops the entry within `memory.poll_s` and the next
training run leaves it out too; seed entries live in `training.seed_dataset` and are edited there.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from bot.config import Settings
from bot.errors import BotError


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="The expert memory: answers the team vouches for, reused as written.",
                        no_args_is_help=True)
    group.command("list")(list_entries)
    group.command("search")(search)
    group.command("remove")(remove)
    app.add_typer(group, name="memory")


def _open_memory(settings: Settings) -> tuple[Any, Any, Any]:
    """The store, the memory (synced now) and the knowledge base whose query vectors it shares."""
    from bot.conversation_log.opening import open_store
    from bot.factory import build_expert_memory
    from bot.indexing.knowledge_base import build_knowledge_base
    from bot.model_assets import force_offline, load_embedder

    force_offline()
    if not settings.memory.enabled:
        raise BotError("memory.enabled is false: the expert memory is off (set it to true in config.toml)")
    store = open_store(settings)
    embedder = load_embedder(settings)
    knowledge = build_knowledge_base(settings, embedder)
    return store, build_expert_memory(settings, store, embedder, knowledge), knowledge


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def list_entries(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="Only entries from: seed, correction or confirmed.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Every entry: staff corrections and confirmed answers first, then the seed file's."""
    from bot.cli.context import cli_context, console

    store, memory, knowledge = _open_memory(cli_context(ctx).settings())
    try:
        entries = [e for e in memory.entries() if not source or e.source == source]
    finally:
        memory.close()
        knowledge.close()
        store.close()
    for entry in entries:
        if as_json:
            console.print_json(json.dumps(entry.__dict__))
        else:
            console.print(f"[bold]{entry.entry_id}[/bold] ({entry.source}, {entry.route}) {_short(entry.question)}\n"
                          f"    → {_short(entry.answer)}", highlight=False)
    if not as_json:
        console.print(f"{len(entries)} entries", highlight=False)


def search(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="A customer question.")],
    k: Annotated[int, typer.Option("-k", help="How many entries to show.")] = 5,
) -> None:
    """The entries nearest a question, and how the bot would answer it from them."""
    from bot.cli.context import cli_context, console
    from bot.memory.matching import is_similar_match, is_verified_match, missing_subjects, uncovered_words

    settings = cli_context(ctx).settings()
    store, memory, knowledge = _open_memory(settings)
    try:
        found = memory.lookup(question, k, k_answers=1)
        vocabulary = memory.vocabulary
    finally:
        memory.close()
        knowledge.close()
        store.close()
    hits = found.by_question
    cfg = settings.memory
    for rank, hit in enumerate(hits, start=1):
        verdict = ""
        if rank == 1:
            missing = uncovered_words(question, hit.entry.question)
            if is_verified_match(question, hit, cfg.verified_threshold):
                verdict = "  [green]verified: given as written[/green]"
            elif hit.similarity >= cfg.verified_threshold:
                verdict = f"  [yellow]close, but the entry does not mention: {', '.join(missing)}[/yellow]"
            elif hit.similarity >= cfg.ground_min_similarity:
                verdict = f"  [yellow]below {cfg.verified_threshold:.2f}: not given as written[/yellow]"
        console.print(f"{rank}. {hit.similarity:.3f} [bold]{hit.entry.entry_id}[/bold] ({hit.entry.source}) "
                      f"{_short(hit.entry.question)}{verdict}\n    → {_short(hit.entry.answer)}", highlight=False)
    if found.by_answer and not (hits and is_verified_match(question, hits[0], cfg.verified_threshold)):
        best = found.by_answer[0]
        missing = missing_subjects(question, best.entry.question, vocabulary)
        if is_similar_match(question, best, cfg.similar_threshold, vocabulary):
            how = "[green]given as written, framed as the answer to a similar question[/green]"
        elif best.similarity >= cfg.similar_threshold:
            how = f"[yellow]not reused: the entry does not name {', '.join(missing)}[/yellow]"
        else:
            how = f"[yellow]below {cfg.similar_threshold:.2f}: the model answers (grounded when close enough)[/yellow]"
        console.print(f"by question and answer: {best.similarity:.3f} [bold]{best.entry.entry_id}[/bold] "
                      f"{_short(best.entry.question)}  {how}", highlight=False)
    if not hits:
        console.print("the expert memory is empty", highlight=False)


def remove(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(help="An entry id from `memory list`, e.g. turn:42.")],
    staff: Annotated[str, typer.Option(help="Who removes it (recorded in the log).")] = "cli",
) -> None:
    """Withdraw a staff entry: the turn's label is retracted, so training leaves it out too."""
    from bot.cli.context import cli_context, console

    if entry_id.startswith("seed:"):
        raise BotError(f"{entry_id} comes from training.seed_dataset: delete or fix its line there "
                       "(the memory follows the file within seconds)")
    if not entry_id.startswith("turn:") or not entry_id[5:].isdigit():
        raise BotError(f"{entry_id!r} is not an entry id; `supportbot memory list` shows them (turn:<id>)")
    turn_id = int(entry_id[5:])
    store, memory, knowledge = _open_memory(cli_context(ctx).settings())
    try:
        if entry_id not in {e.entry_id for e in memory.entries()}:
            raise BotError(f"{entry_id} is not in the expert memory (already removed, or never vouched for)")
        store.retract_label(turn_id, staff, note="removed with `supportbot memory remove`")
        report = memory.refresh(force=True)
    finally:
        memory.close()
        knowledge.close()
        store.close()
    console.print(f"removed {entry_id}; {report.total if report else len(memory)} entries left", highlight=False)
