"""Run every benchmark, one after another, and stitch their pages into docs/benchmarks/all.md.

Each benchmark writes its own page under docs/benchmarks/ (figures, baselines measured in the
same run, the command). This script runs them in sequence — never in parallel, since they
measure speed on a 2-core machine — and then stitches the pages into docs/benchmarks/all.md with
the machine and the date, so one command answers "how fast and how good is it, here, today".

docs/benchmarks.md is the curated summary (each page's figures with the before/after
`supportbot eval` runs and the reasoning beside them); this script never rewrites it, since a
stitch would drop everything written by hand. Copy a rerun page's new figures there yourself.

    .venv/bin/python -m bench.run_all            # full runs (the fine-tune proof takes ~15 min)
    .venv/bin/python -m bench.run_all --quick    # every script end to end, small sizes
    .venv/bin/python -m bench.run_all --only router knowledge
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "docs" / "benchmarks"
SUMMARY = PAGES / "all.md"

# (name, module, page) in the order a reader cares about: answers first, then speed.
BENCHMARKS = [
    ("router", "bench.router", "router.md"),
    ("knowledge", "bench.knowledge", "knowledge.md"),
    ("policy", "bench.policy_answers", "policy.md"),
    ("lead-weights", "bench.lead_weights", "lead_weights.md"),
    ("memory-evidence", "bench.memory_evidence", "memory_evidence.md"),
    ("handoff", "bench.handoff", "handoff.md"),
    ("domain-answers", "bench.domain_answers", "domain_answers.md"),
    ("domain", "bench.domain", "domain.md"),
    ("memory-reuse", "bench.memory_reuse", "memory_reuse.md"),
    ("memory", "bench.memory", "memory.md"),
    ("similar-answers", "bench.similar_answers", "similar_answers.md"),
    ("first-router", "bench.first_router", "first_router.md"),
    ("conversations", "bench.conversations", "conversations.md"),
    ("ops-overhead", "bench.ops_overhead", "ops_overhead.md"),
    ("trainer-parity", "bench.trainer_parity", "trainer_parity.md"),
    ("grounded-finetune", "bench.grounded_finetune", "training.md"),
    ("finetune-medquad", "bench.bench_finetune", "finetune.md"),
    ("slack", "bench.slack", "slack.md"),
    ("slack-flood", "bench.slack_flood", "slack_flood.md"),
    ("rasa", "bench.rasa_actions", "rasa.md"),
]


def machine() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem_gb:.0f} GiB RAM, Python {platform.python_version()}"


def run(module: str, quick: bool) -> tuple[int, float]:
    cmd = [sys.executable, "-m", module] + (["--quick"] if quick else [])
    started = time.perf_counter()
    rc = subprocess.call(cmd, cwd=REPO)
    return rc, time.perf_counter() - started


def stitch(results: dict[str, tuple[int, float]], quick: bool) -> None:
    lines = [
        "# Benchmarks: every page as last run",
        "",
        f"Machine: {machine()}. Stitched {dt.date.today().isoformat()} by "
        f"`.venv/bin/python -m bench.run_all{' --quick' if quick else ''}`.",
        "Each section was written by its own script (command inside); baselines were measured in the",
        "same run as the figures they are compared with. Targets from the issues are floors. The curated",
        "summary, with the before/after evaluation runs, is [../benchmarks.md](../benchmarks.md).",
        "",
    ]
    for name, _module, page in BENCHMARKS:
        path = PAGES / page
        if name in results:
            rc, seconds = results[name]
            status = "ok" if rc == 0 else f"FAILED (exit {rc})"
            lines.append(f"<!-- {name}: {status}, {seconds:.0f} s this run -->")
        if path.is_file():
            body = path.read_text(encoding="utf-8").strip()
            # Demote the page's headings one level under this document's title.
            body = "\n".join("#" + ln if ln.startswith("#") else ln for ln in body.splitlines())
            lines += [body, ""]
        else:
            lines += [f"## {name}", "", "Not measured yet.", ""]
    tmp = SUMMARY.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, SUMMARY)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks every script end to end")
    parser.add_argument("--only", nargs="*", default=None, help="names: " + ", ".join(b[0] for b in BENCHMARKS))
    parser.add_argument("--stitch-only", action="store_true", help="rebuild docs/benchmarks/all.md without running")
    args = parser.parse_args()
    results: dict[str, tuple[int, float]] = {}
    if not args.stitch_only:
        for name, module, _page in BENCHMARKS:
            if args.only is None or name in args.only:
                results[name] = run(module, args.quick)
    stitch(results, args.quick)
    failed = [name for name, (rc, _) in results.items() if rc != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
