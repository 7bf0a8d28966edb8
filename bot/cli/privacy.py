"""`supportbot privacy forget | export`: a customer's right to see and erase what the bot holds.

Both take exactly one of `--slack-user U…` or `--rasa-sender ID`. `forget` deletes the person's
turns, votes and the labels on their turns, the expert-memory entries built from them, and their
words anywhere in the state directory (training exports, reports, saved routers), then prints
what it removed and which adapter versions were trained on their data, so ops can retrain
without it. Neither command logs what the person wrote.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bot.errors import BotError


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="See and erase what the bot holds about one customer.", no_args_is_help=True)
    group.command("forget")(forget)
    group.command("export")(export)
    app.add_typer(group, name="privacy")


SlackUser = Annotated[str, typer.Option("--slack-user", help="The customer's Slack user id (U…).")]
RasaSender = Annotated[str, typer.Option("--rasa-sender", help="The customer's Rasa sender id.")]


def _who(slack_user: str, rasa_sender: str) -> tuple[str, str]:
    if bool(slack_user.strip()) == bool(rasa_sender.strip()):
        raise BotError("name exactly one person: --slack-user U… or --rasa-sender ID")
    return ("slack", slack_user.strip()) if slack_user.strip() else ("rasa", rasa_sender.strip())


def forget(
    ctx: typer.Context,
    slack_user: SlackUser = "",
    rasa_sender: RasaSender = "",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Erase one customer's data from the log, the expert memory and the state directory."""
    from bot.cli.context import cli_context, console
    from bot.conversation_log.opening import open_store
    from bot.privacy import forget_person

    channel, user_id = _who(slack_user, rasa_sender)
    settings = cli_context(ctx).settings()
    if not yes and not typer.confirm(f"Erase everything the bot holds about {channel} user {user_id}?"):
        raise typer.Exit(1)
    store = open_store(settings)
    memory = knowledge = None
    try:
        if settings.memory.enabled:
            from bot.factory import build_expert_memory
            from bot.indexing.knowledge_base import build_knowledge_base
            from bot.model_assets import force_offline, load_embedder

            force_offline()
            embedder = load_embedder(settings)
            knowledge = build_knowledge_base(settings, embedder)
            memory = build_expert_memory(settings, store, embedder, knowledge)
            memory.close()  # no polling: this process syncs once, after the deletion
        report = forget_person(settings, store, channel, user_id, memory=memory)
    finally:
        if knowledge is not None:
            knowledge.close()
        store.close()
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
        return
    console.print(
        f"Removed {report.turns} turn(s), {report.feedback} vote(s), {report.labels} staff label(s), "
        f"{report.memory_entries} expert-memory entr{'y' if report.memory_entries == 1 else 'ies'} and "
        f"{report.export_rows} training-export row(s); {len(report.files_changed)} file(s) in the state "
        "directory changed.", highlight=False)
    for path in report.files_changed:
        console.print(f"  changed: {path}", highlight=False)
    if report.adapters_trained_on_them:
        console.print(f"[yellow]Adapter version(s) trained on their data: {', '.join(report.adapters_trained_on_them)}. "
                      "Run `supportbot train run` to train one without it, then promote it.[/yellow]")
    if report.routers_trained_on_them:
        console.print(f"[yellow]Router version(s) that learnt from their questions: "
                      f"{', '.join(report.routers_trained_on_them)} (their text is erased there; "
                      "`supportbot router train` leaves them out).[/yellow]")


def export(
    ctx: typer.Context,
    slack_user: SlackUser = "",
    rasa_sender: RasaSender = "",
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON here instead of printing it.")] = None,
) -> None:
    """Everything the bot holds about one customer, as JSON (their turns, votes, labels on their turns)."""
    from bot.atomic import atomic_write_text
    from bot.cli.context import cli_context, console
    from bot.conversation_log.opening import open_store
    from bot.privacy import export_person

    channel, user_id = _who(slack_user, rasa_sender)
    store = open_store(cli_context(ctx).settings())
    try:
        data = export_person(store, channel, user_id)
    finally:
        store.close()
    text = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if out is None:
        console.print_json(text)
    else:
        atomic_write_text(out, text)
        console.print(f"wrote {len(data['turns'])} turn(s) to {out}", highlight=False)
