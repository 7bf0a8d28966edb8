"""`supportbot` command line: one function per command, its docstring is its help.

Heavy imports (torch, chromadb, slack) happen inside the commands so `--help` is instant.
Errors a user can fix (`BotError`) print one line and exit 2; nothing else is caught here.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from bot.cli.context import CliContext, cli_context, console
from bot.config import Settings
from bot.errors import BotError
from bot.masking import mask_secrets_in_text

app = typer.Typer(
    name="supportbot",
    help="Customer-support bot for Slack: route, answer, log, learn from staff corrections.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Path to config.toml (default: $SUPPORTBOT_CONFIG or ./config.toml)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    ctx.obj = CliContext(config_path=config, verbose=verbose)


@config_app.command("check")
def config_check(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the effective config as JSON.")] = False,
) -> None:
    """Validate the configuration and print the effective values, secrets masked."""
    settings = cli_context(ctx).settings()
    data = settings.masked()
    if as_json:
        console.print_json(json.dumps(data))
        return
    source = settings.config_path or "(built-in defaults)"
    console.print(f"[green]config OK[/green]: {source}")
    for section, values in data.items():
        console.print(f"[bold]\\[{section}][/bold]")
        for key, value in values.items():
            console.print(f"  {key} = {json.dumps(value)}")


def _print_answer(answer: Any) -> None:
    console.print(answer.text, markup=False, highlight=False)
    meta = f"route={answer.route} confidence={answer.confidence:.2f} latency={answer.latency_ms:.0f}ms"
    if answer.fallback_reason:
        meta += f" fallback: {answer.fallback_reason}"
    if answer.kind:
        meta += f" kind={answer.kind}"
    console.print(f"[dim]{meta}[/dim]", highlight=False)
    if answer.standalone_question:
        console.print(f"  read with the conversation as: {answer.standalone_question}", style="dim",
                      markup=False, highlight=False)
    for src in answer.sources:
        where = src.url or src.path
        heading = f" > {src.heading}" if src.heading else ""
        updated = f" (updated {src.updated})" if src.updated else ""
        console.print(f"[dim]  source: {src.title}{heading} - {where}{updated}[/dim]", highlight=False)


@app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The customer's question.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output for scripts.")] = False,
    user: Annotated[str, typer.Option(help="User id to log the turn under.")] = "cli",
) -> None:
    """Answer one question through the full pipeline (route, answer, log) and exit."""
    from bot.factory import build_runtime
    from bot.interfaces import AskContext

    runtime = build_runtime(cli_context(ctx).settings(), watch=False)
    try:
        answer = runtime.pipeline.answer(question, AskContext(channel="cli", user=user, history="none"))
    finally:
        runtime.close()
    if as_json:
        sys.stdout.write(json.dumps(answer.to_dict(), ensure_ascii=False) + "\n")
    else:
        _print_answer(answer)


@app.command()
def chat(ctx: typer.Context) -> None:
    """Interactive console chat on the same pipeline as Slack (type 'exit' or Ctrl-D to quit).

    Shows what a customer would see (answer, route, sources); the log goes to <state_dir>/logs/console.log,
    and to the terminal only at WARNING and above, or everything with --verbose.
    """
    context = cli_context(ctx)
    run_console_chat(context.settings(), verbose=context.verbose)


def run_console_chat(settings: Settings, *, verbose: bool = False) -> None:
    """One session until 'exit' or end of input; no single line, however malformed, ends it."""
    import getpass
    import uuid

    from bot.factory import build_runtime
    from bot.interfaces import AskContext

    with console.status("Loading models and the knowledge base..."):
        runtime = build_runtime(settings, watch=settings.knowledge.watch, train_seed_adapter=True)
        runtime.warm_up_domain()
    ctx = AskContext(channel="console", user=getpass.getuser(), conversation_key=uuid.uuid4().hex)
    if hasattr(sys.stdin, "reconfigure"):  # bytes that are not UTF-8 reach the pipeline, which replaces them
        sys.stdin.reconfigure(errors="surrogateescape")
    log_file = chat_logging(settings, verbose)
    console.print(
        f"[bold]{settings.app.company_name} support[/bold] - ask a question "
        "(try: 'How long does shipping to Canada take?'). Type 'exit' to quit."
        + (f" [dim](log: {log_file})[/dim]" if log_file else "")
    )
    try:
        while True:
            try:
                question = console.input("[bold cyan]you>[/bold cyan] ")
            except (EOFError, KeyboardInterrupt):
                console.print()
                break
            if question.strip().lower() in {"exit", "quit", ":q"}:
                break
            if not question.strip():
                continue
            try:
                answer = runtime.pipeline.answer(question, ctx)
            except Exception:  # the boundary of one question: report it, keep the session
                logging.getLogger(__name__).exception("could not answer this question")
                console.print("[bold red]bot>[/bold red] Sorry, something went wrong with that question "
                              f"(details in {log_file or 'the log'}). Please try again.")
                continue
            console.print("[bold green]bot>[/bold green] ", end="")
            _print_answer(answer)
    finally:
        runtime.close()


def chat_logging(settings: Settings, verbose: bool) -> Path | None:
    """During a chat the terminal is the customer's view: INFO lines would land between the prompt and
    the answer. They go to <state_dir>/logs/console.log instead; the terminal keeps WARNING and above
    (everything with --verbose). Returns the log file, or None when it cannot be opened."""
    from logging.handlers import RotatingFileHandler

    from bot.masking import MaskUrlPasswords

    root = logging.getLogger()
    if not verbose:
        for handler in root.handlers:
            handler.setLevel(logging.WARNING)
    path = settings.state_dir / "logs" / "console.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = RotatingFileHandler(path, maxBytes=5_000_000, backupCount=2, encoding="utf-8")
    except OSError as exc:
        logging.getLogger(__name__).warning("no console log file at %s (%s); logging to the terminal only", path, exc)
        return None
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    file_handler.addFilter(MaskUrlPasswords())
    root.addHandler(file_handler)
    return path


@app.command()
def prepare(ctx: typer.Context) -> None:
    """Check the offline models and convert the bundled GGUF once (Docker builds run this)."""
    import time

    from bot.model_assets import base_llm_dir, force_offline, load_embedder

    settings = cli_context(ctx).settings()
    force_offline()
    started = time.perf_counter()
    load_embedder(settings)
    console.print(f"embedder ready ({time.perf_counter() - started:.1f}s)")
    if settings.domain.backend != "openai":
        started = time.perf_counter()
        with console.status("Preparing the base LLM (first time: converting the GGUF, ~35 s)..."):
            path = base_llm_dir(settings)
        console.print(f"base LLM ready at {path} ({time.perf_counter() - started:.1f}s)")


@app.command()
def serve(ctx: typer.Context) -> None:
    """Run the bot: in Slack when Slack tokens are set, otherwise the console chat."""
    settings = cli_context(ctx).settings()
    secrets = settings.secrets
    if secrets.slack_bot_token is None:
        logging.getLogger(__name__).warning(
            "SLACK_BOT_TOKEN is not set: starting the console chat instead of Slack"
        )
        run_console_chat(settings, verbose=cli_context(ctx).verbose)
        return
    from bot.slack.server import serve_slack

    serve_slack(settings)


def _register_command_groups() -> None:
    """Command groups live beside the code they drive; each module exposes `register(app)`."""
    from bot.cli import actions, adapters, evaluate, knowledge, memory, privacy, router, training

    for module in (knowledge, memory, router, adapters, training, actions, evaluate, privacy):
        module.register(app)


_register_command_groups()


def main() -> None:
    try:
        app()
    except BotError as exc:
        sys.stderr.write(f"error: {mask_secrets_in_text(str(exc))}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
