"""What the Rasa action server adds on top of answering: HTTP, JSON, tracker parsing, validation.

The answerers are instant fakes, so the figures isolate the server; the conversation log is a
real SQLite file, as in production. Baselines in the same run: calling `Pipeline.answer`
directly, and rasa-sdk's own app without our request validation.

    .venv/bin/python -m bench.rasa_actions [--quick]
"""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sanic import Sanic

from bot.answerers.escalation import EscalationAnswerer
from bot.atomic import atomic_write_text
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.evaluation.metrics import percentile
from bot.interfaces import AskContext, Draft, PartialCallback, RouteDecision, Source
from bot.pipeline import Pipeline
from bot.rasa.actions import build_action_executor
from bot.rasa.server import build_action_server, serve_in_thread

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "rasa.md"


class InstantRouter:
    def decide(self, question: str) -> RouteDecision:
        return RouteDecision(route="retrieval", confidence=0.9, reason="bench")


class InstantAnswerer:
    route = "retrieval"

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        return Draft(
            text="We ship live plants Monday to Wednesday; Canada takes 4-7 business days.",
            sources=[Source(title="Shipping", path="knowledge/shipping.md", url="https://rareroots.example/help/shipping")],
        )


def payload(action: str, sender: str, text: str, intent: str) -> dict[str, Any]:
    parse = {"intent": {"name": intent, "confidence": 0.9}, "entities": [], "text": text,
             "message_id": uuid.uuid4().hex, "metadata": {}}
    events = [{"event": "action", "timestamp": time.time(), "name": "action_listen"},
              {"event": "user", "timestamp": time.time(), "text": text, "parse_data": parse}] * 10
    return {
        "next_action": action, "sender_id": sender, "version": "3.6.21",
        "tracker": {"sender_id": sender, "slots": {}, "latest_message": parse, "events": events,
                    "paused": False, "active_loop": {}, "latest_action_name": "action_listen"},
        "domain": {"version": "3.1", "intents": ["ask_support", "affirm", "deny"], "slots": {}, "responses": {},
                   "actions": ["action_support_answer", "action_support_feedback"]},
    }


def timed(calls: int, fn: Callable[[int], Any]) -> list[float]:
    for i in range(min(5, calls)):  # warm-up: first-request setup is not steady-state cost
        fn(-1 - i)
    out = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - started) * 1000)
    return out


def row(name: str, ms: list[float]) -> str:
    return (f"| {name} | {len(ms)} | {percentile(ms, 50):.2f} | {percentile(ms, 95):.2f} | "
            f"{statistics.fmean(ms):.2f} | {1000 / statistics.fmean(ms):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 calls per case instead of 400")
    args = parser.parse_args()
    calls = 50 if args.quick else 400
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", message="Your versions of rasa and rasa_sdk")  # the payload's version
    Sanic.test_mode = True  # this process starts two apps
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(app={"state_dir": Path(tmp)})
        store = ConversationStore.open(settings.database_url)
        pipeline = Pipeline.from_settings(settings, store, InstantRouter(),
                            {"retrieval": InstantAnswerer(), "escalate": EscalationAnswerer(settings.app.company_name)})
        rows = [row("`Pipeline.answer` called directly (baseline)",
                    timed(calls, lambda i: pipeline.answer("Do you ship to Canada?",
                                                           AskContext(channel="rasa", user=f"d{i}"))))]

        from rasa_sdk.endpoint import create_app

        plain = create_app(build_action_executor(settings, pipeline, store), cors_origins=None)
        with serve_in_thread(plain) as url, httpx.Client() as client:
            rows.append(row("rasa-sdk app, no validation middleware (baseline)", timed(calls, lambda i: client.post(
                f"{url}/webhook", json=payload("action_support_answer", f"p{i}", "Do you ship to Canada?", "ask_support")
            ).raise_for_status())))

        app = build_action_server(settings, pipeline, store)
        with serve_in_thread(app) as url, httpx.Client() as client:
            rows.append(row("`action_support_answer` via `build_action_server`", timed(calls, lambda i: client.post(
                f"{url}/webhook", json=payload("action_support_answer", f"s{i}", "Do you ship to Canada?", "ask_support")
            ).raise_for_status())))
            rows.append(row("`action_support_feedback` (vote on last answer)", timed(calls, lambda i: client.post(
                f"{url}/webhook", json=payload("action_support_feedback", f"s{max(i, 0)}", "/affirm", "affirm")
            ).raise_for_status())))
            rows.append(row("malformed call rejected with 400", timed(calls, lambda i: client.post(
                f"{url}/webhook", content=b'{"next_action": "action_support_answer"}'))))
        store.close()

    command = "python -m bench.rasa_actions" + (" --quick" if args.quick else "")
    text = "\n".join([
        "# Rasa action server overhead",
        "",
        f"- command: `{command}`",
        f"- machine: {platform.machine()}, {platform.processor() or 'unknown CPU'}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        "- answerers are instant fakes and the log is a real SQLite file, so these are the costs of "
        "HTTP, JSON, tracker parsing, validation and logging a turn; a real answer adds the model's time.",
        "- one client, keep-alive, sequential calls; tracker of 20 events.",
        "",
        "| case | calls | p50 ms | p95 ms | mean ms | calls/s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    atomic_write_text(OUT, text)
    sys.stdout.write(text)
    sys.stdout.write(f"\nwritten to {OUT} ({shlex.quote(command)})\n")


if __name__ == "__main__":
    main()
