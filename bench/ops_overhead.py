"""Do Prometheus scrapes and the retention job slow answers down? (issue #19)

    .venv/bin/python -m bench.ops_overhead      # ~2 minutes on an idle 2-core machine

The real pipeline (router trained at the first start, the knowledge base, extractive policy
answers, a SQLite log holding 20,000 earlier turns, half of them past the retention limit)
answers the 68 policy questions of `data/policy_testset.jsonl`, several rounds, in three
interleaved conditions so that machine noise hits all three alike:

- quiet: nothing else runs;
- scraped: another thread renders `/metrics` (`bot.metrics.exposition`) every 100 ms (Prometheus
  scrapes every 15-60 s: this is hundreds of times more often);
- retention: an hourly retention run starts with the round and works through a backlog of 5,000
  expired turns (`apply_retention`, batches of 500 with a pause between them, as served).

Reports answer latency p50 / p95 per condition. Figures go to docs/benchmarks/ops_overhead.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.page import write_page

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "ops_overhead.md"


def fill_log(store: Any, n: int) -> None:
    from sqlalchemy import update

    from bot.conversation_log.schema import Turn, utcnow
    from bot.interfaces import Answer, AskContext

    filler = Answer(text="An earlier answer.", route="retrieval", confidence=0.9, reason="bench")
    ids = [store.log_turn(f"earlier question {i}", filler, AskContext(channel="slack", user=f"U{i % 500}",
                                                                      conversation_key=f"C:{i}")) for i in range(n)]
    with store._tx() as s:  # half of them past the limit
        s.execute(update(Turn).where(Turn.id.in_(ids[: n // 2])).values(created_at=utcnow() - timedelta(days=400)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    from bot import metrics
    from bot.config import load_settings
    from bot.evaluation.metrics import percentile
    from bot.factory import build_runtime
    from bot.interfaces import AskContext
    from bot.privacy import apply_retention

    questions = [json.loads(line)["question"] for line in (REPO / "data" / "policy_testset.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as tmp:
        settings = load_settings(None, env={}, overrides={
            "app.state_dir": tmp, "privacy.retention_days": 30, "memory.enabled": False})
        runtime = build_runtime(settings)
        fill_log(runtime.store, 20_000)
        pipeline = runtime.pipeline
        for q in questions[:5]:
            pipeline.answer(q, AskContext(channel="bench", user="warm", history="none"))
        latencies: dict[str, list[float]] = {"quiet": [], "scraped": [], "retention": []}
        deleted = scrapes = 0
        for _ in range(rounds):
            for condition in latencies:
                stop = threading.Event()

                def scrape(stop: threading.Event = stop) -> None:
                    nonlocal scrapes
                    while not stop.wait(0.1):
                        metrics.exposition()
                        scrapes += 1

                if condition == "retention":
                    fill_log(runtime.store, 10_000)  # half of it expired: the backlog this run clears

                def retain(stop: threading.Event = stop) -> None:
                    nonlocal deleted
                    deleted += apply_retention(settings, runtime.store).turns
                worker = {"scraped": scrape, "retention": retain}.get(condition)
                thread = threading.Thread(target=worker) if worker else None
                if thread:
                    thread.start()
                for q in questions:
                    t0 = time.perf_counter()
                    pipeline.answer(q, AskContext(channel="bench", user="b", history="none"))
                    latencies[condition].append((time.perf_counter() - t0) * 1000)
                stop.set()
                if thread:
                    thread.join()
        runtime.close()
    quiet95 = percentile(latencies["quiet"], 95)
    lines = [
        "# Operations overhead: metrics scrapes and the retention job vs answer latency",
        "",
        f"Command: `.venv/bin/python -m bench.ops_overhead{' --quick' if args.quick else ''}` · "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} · {platform.node()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()} · {(time.perf_counter() - started) / 60:.1f} min.",
        "",
        f"Issue #19. {len(questions)} policy questions × {rounds} round(s) per condition, conditions interleaved; "
        "the real pipeline (trained router, knowledge base, extractive answers) on a SQLite log of 20,000 turns. "
        f"Scraped: `/metrics` rendered every 100 ms ({scrapes} scrapes). Retention: one run per round, started with it, "
        f"clearing a backlog of expired turns ({deleted:,} deleted in all, the first round's including the 10,000 "
        "expired at the start).",
        "",
        "| condition | answers | p50 | p95 | p95 vs quiet |",
        "|---|---|---|---|---|",
        *[f"| {name} | {len(values)} | {percentile(values, 50):.1f} ms | {percentile(values, 95):.1f} ms | "
          f"{percentile(values, 95) / quiet95:.2f}× |" for name, values in latencies.items()],
        "",
    ]
    write_page(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
