"""What every `supportbot` command shares: this invocation's settings, and where output goes.

The top-level callback builds one `CliContext` per invocation and hands it to the commands through
Typer's `ctx.obj`. Nothing is kept at module level, so two invocations in one process (the tests,
a tool that embeds the CLI) never see each other's configuration, and the command modules import
this module instead of the one that registers them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console

from bot.config import Settings, load_settings
from bot.masking import MaskUrlPasswords

console = Console()
err_console = Console(stderr=True)


@dataclass
class CliContext:
    config_path: Path | None = None
    verbose: bool = False
    _settings: Settings | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        """Loaded on first use, so `--help` and a bad config on an unrelated command cost nothing."""
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            setup_logging(self._settings.app.log_level if not self.verbose else "DEBUG")
        return self._settings


def cli_context(ctx: typer.Context) -> CliContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliContext):  # a command invoked without the top-level callback
        obj = ctx.find_root().obj = CliContext()
    return obj


def setup_logging(level: str) -> None:
    """Log to stderr; every record passes `MaskUrlPasswords`, so no URL password reaches a log."""
    from rich.logging import RichHandler

    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False)
    handler.addFilter(MaskUrlPasswords())
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    for noisy in ("httpx", "chromadb", "sentence_transformers", "urllib3", "transformers", "sanic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
