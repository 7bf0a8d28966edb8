"""Runs the real `supportbot` CLI in a subprocess with the model-loading runtime swapped for fakes.

Used by the CLI test: `python -m tests.rasa.cli_harness --config CFG actions` exercises the
command, the settings, the socket binding and Sanic's single-process server, without models.
"""

from __future__ import annotations

from typing import Any

import bot.factory
from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log.opening import open_store
from bot.factory import Runtime
from bot.pipeline import Pipeline
from tests.rasa.conftest import CannedAnswerer, KeywordRouter


def build_fake_runtime(settings: Settings, **_: Any) -> Runtime:
    store = open_store(settings)
    domain = CannedAnswerer("domain", "Keep Nepenthes humid and in bright, indirect light.")
    pipeline = Pipeline.from_settings(
        settings,
        store,
        KeywordRouter(),
        {
            "domain": domain,
            "retrieval": CannedAnswerer("retrieval", "We ship live plants from March to October."),
            "escalate": EscalationAnswerer(settings.app.company_name),
        },
    )
    return Runtime(settings, store, pipeline, None, None, domain, [store.close])  # type: ignore[arg-type]


def main() -> None:
    bot.factory.build_runtime = build_fake_runtime  # type: ignore[assignment]
    from bot.cli.main import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
