"""Does training the router at the first start beat zero-shot routing on the shop's questions?

    .venv/bin/python -m bench.first_router      # ~1 minute on an idle 2-core machine

A fresh install used to route zero-shot (nearest seed-topic centroid) until someone ran
`supportbot router train`; now the first start trains one (`router.train_at_start`,
`bot.factory.train_first_router`). Both routers, built on one fresh state directory from the
shipped seed file and the sample knowledge base, route every question of the shop's question
sets through `TopicRouter.decide` and the pipeline's thresholds (below its threshold a route
falls back to a person). None of these questions is in the seed file. Figures go to
docs/benchmarks/first_router.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.page import page_arguments, write_page

REPO = Path(__file__).resolve().parents[1]
SETS = {
    "data/testset.jsonl": "demo test set (domain, policy, escalate)",
    "data/policy_testset.jsonl": "policy questions (issue 18)",
    "data/domain_heldout.jsonl": "domain questions, held out (issue 16)",
    "bench/data/policy_tuning.jsonl": "policy tuning questions",
    "data/escalation_heldout.jsonl": "escalations, written blind (issue 18 follow-up)",
}
OUT = REPO / "docs" / "benchmarks" / "first_router.md"


def read_items(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def after_thresholds(decision: Any, settings: Any) -> str:
    """The route the pipeline tries first: below its threshold a route goes to a person."""
    return decision.route if decision.confidence >= settings.router.thresholds.get(decision.route, 0.0) else "escalate"


def routed(router: Any, settings: Any, question: str) -> str:
    return after_thresholds(router.decide(question), settings)


def fresh_install(state_dir: str) -> tuple[Any, Any, Any]:
    """Settings, embedder and synced knowledge base of a fresh install on `state_dir` (no router yet)."""
    from bot.config import load_settings
    from bot.indexing.knowledge_base import build_knowledge_base
    from bot.model_assets import configure_torch_threads, load_embedder

    settings = load_settings(None, env={}, overrides={"app.state_dir": state_dir})
    configure_torch_threads(settings)
    embedder = load_embedder(settings)
    knowledge = build_knowledge_base(settings, embedder)
    knowledge.sync()
    return settings, embedder, knowledge


def main() -> int:
    args = page_arguments(__doc__, OUT).parse_args()
    started = time.perf_counter()
    from bot.conversation_log import ConversationStore
    from bot.factory import train_first_router
    from bot.model_assets import force_offline
    from bot.registry import router_registry
    from bot.router import TopicRouter

    force_offline()
    items = {name: read_items(REPO / name) for name in SETS}
    with tempfile.TemporaryDirectory(prefix="bench-first-router-") as tmp:
        settings, embedder, knowledge = fresh_install(tmp)
        store = ConversationStore.open(f"sqlite:///{Path(tmp) / 'log.db'}")
        # A frozen clock: this one never looks for the version trained next (no hot reload).
        zero_shot = TopicRouter(settings.router, router_registry(settings), embedder=embedder, knowledge=knowledge, clock=lambda: 0.0)
        zero_shot.warm_up()  # loads what serves now: nothing is trained yet, so zero-shot
        train_started = time.perf_counter()
        version = train_first_router(settings, embedder, store, knowledge)
        train_s = time.perf_counter() - train_started
        trained = TopicRouter(settings.router, router_registry(settings), embedder=embedder, knowledge=knowledge)
        rows, misses = [], {"zero-shot": [], "trained": []}
        still_wrong: list[str] = []
        totals = {"zero-shot": 0, "trained": 0}
        count = 0
        for name, questions in items.items():
            right = {"zero-shot": 0, "trained": 0}
            for item in questions:
                for label, router in (("zero-shot", zero_shot), ("trained", trained)):
                    route = routed(router, settings, item["question"])
                    right[label] += route == item["expected_route"]
                    if route != item["expected_route"]:
                        misses[label].append(f"{item['question']} ({item['expected_route']} → {route})")
                        if label == "trained":
                            still_wrong.append(f"- `{name}`: {misses[label][-1]}")
            n = len(questions)
            count += n
            for label in totals:
                totals[label] += right[label]
            rows.append(f"| {SETS[name]} (`{name}`) | {n} | {right['zero-shot'] / n:.1%} | "
                        f"**{right['trained'] / n:.1%}** |")
        knowledge.close()
        store.close()
    only = {label: sorted(set(misses[label]) - set(misses[other]))
            for label, other in (("zero-shot", "trained"), ("trained", "zero-shot"))}
    lines = [
        "# The first start trains the router: zero-shot vs trained, on the shop's questions",
        "",
        f"Command: `.venv/bin/python -m bench.first_router` · {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} · "
        f"{platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()} · "
        f"{(time.perf_counter() - started) / 60:.1f} min.",
        "",
        "Route accuracy after the pipeline's thresholds (a route below its threshold goes to a person), both "
        f"routers built from the shipped `data/seed_routes.yaml` on one fresh state directory. Training "
        f"{version} at start took **{train_s:.1f} s** (embedding the seed and domain questions, knowledge-base "
        "signals, 5-fold calibration).",
        "",
        "| questions | n | zero-shot (before) | trained at first start |",
        "|---|---|---|---|",
        *rows,
        f"| **all** | {count} | {totals['zero-shot'] / count:.1%} | **{totals['trained'] / count:.1%}** |",
        "",
        f"Right only with the trained router ({len(only['zero-shot'])}; in brackets: expected → zero-shot's route):",
        "",
        *[f"- {q}" for q in only["zero-shot"]],
        "",
        f"Right only zero-shot ({len(only['trained'])}; in brackets: expected → the trained router's route):",
        "",
        *[f"- {q}" for q in only["trained"]],
        "",
        f"Still wrong with the trained router ({len(still_wrong)}; expected → routed):",
        "",
        *still_wrong,
        "",
    ]
    write_page(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
