"""`supportbot actions`: the Rasa custom-action server on the same pipeline as Slack."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("actions")(actions)


def actions(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default: rasa.host).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default: rasa.port; 0 picks a free one).")
    ] = None,
) -> None:
    """Serve action_support_answer and action_support_feedback to a Rasa assistant.

    Loads the models once, then answers Rasa's webhook at http://HOST:PORT/webhook until Ctrl-C. Point the Rasa project's endpoints.yml action_endpoint there (see docs/rasa.md). Listens on 127.0.0.1 by default; with SUPPORTBOT_RASA_TOKEN set, every request but /health must carry that token (see docs/operations.md).
    """
    from bot.cli.context import cli_context
    from bot.rasa.server import serve_actions

    serve_actions(cli_context(ctx).settings(), host=host, port=port)
