"""Policy answers that lead with the answer: the retrieval answerer before and after, in one run.

    .venv/bin/python -m bench.policy_answers            # figures → docs/benchmarks/policy.md

The shipped sample knowledge base is indexed into a temporary state dir, and the retrieval
answerer answers every retrieval question of data/testset.jsonl and of data/policy_testset.jsonl
twice per pass, interleaved: "before" quotes the best chunk whole (`knowledge.lead_max_chars = 0`,
the old behaviour), "after" leads with the chosen units (the defaults). The answerer is called
directly (search + answer), so the domain model's slow CPU answers do not stretch the run; the
routing step of `supportbot eval` is not included in the latencies. Every call starts with the
knowledge base's search caches cleared, so each one embeds and searches its question; the unit
vectors of "after" are cached as when serving: pass 1 meets every section for the first time,
pass 2 is the steady state. Scores come from the same metrics as `supportbot eval`.

The lead's weights are fitted on the tuning sets by `bench.lead_weights` (never on the
evaluation sets); they live in bot/answerers/lead.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from statistics import fmean
from typing import Any

from bot.evaluation.metrics import percentile

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "policy.md"
SETS = {
    "data/testset.jsonl": "shipped test set",
    "data/policy_testset.jsonl": "policy test set (issue 18)",
    "bench/data/procedure_heldout.jsonl": "held-out \"how do I\" questions",
}



def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f}, Python {platform.python_version()}"


def retrieval_items(path: str) -> list[Any]:
    from bot.evaluation.runner import load_testset

    items, _ = load_testset(REPO / path)
    return [item for item in items if item.expected_route == "retrieval"]


def build(state: Path) -> tuple[Any, Any]:
    """Settings and a synced knowledge base over a copy of knowledge/."""
    from bot.config import load_settings
    from bot.indexing.knowledge_base import build_knowledge_base
    from bot.model_assets import configure_torch_threads, load_embedder

    shutil.copytree(REPO / "knowledge", state / "knowledge")
    (state / "config.toml").write_text('[app]\nstate_dir = "var"\n', encoding="utf-8")
    settings = load_settings(state / "config.toml", env={}, overrides={"knowledge.dir": str(state / "knowledge")})
    configure_torch_threads(settings)
    kb = build_knowledge_base(settings, load_embedder(settings))
    kb.sync()
    return settings, kb


def cold_search(kb: Any) -> None:
    kb.searcher.clear_caches()  # a benchmark measures the uncached path on purpose


def score(item: Any, draft: Any) -> dict[str, Any]:
    from bot.evaluation.metrics import rouge_l, states_key_fact, token_f1
    from bot.evaluation.runner import source_matches

    cited = [s.path for s in draft.sources]
    return {
        "f1": token_f1(draft.text, item.reference),
        "rouge": rouge_l(draft.text, item.reference),
        "key_fact": states_key_fact(draft.text, item.key_facts) if item.key_facts else None,
        "citation": any(source_matches(p, e) for p in cited for e in item.expected_sources)
        if item.expected_sources else None,
        "chars": len(draft.text),
    }


def answer_timed(answerer: Any, kb: Any, question: str) -> tuple[Any, float]:
    from bot.errors import AnswererUnavailable
    from bot.interfaces import AskContext

    cold_search(kb)
    started = time.perf_counter()
    try:
        draft = answerer.answer(question, AskContext(channel="eval"))
    except AnswererUnavailable:
        from bot.interfaces import Draft

        draft = Draft(text="")
    return draft, (time.perf_counter() - started) * 1000


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    facts = [r["key_fact"] for r in rows if r["key_fact"] is not None]
    cites = [r["citation"] for r in rows if r["citation"] is not None]
    return {
        "n": len(rows),
        "f1": fmean(r["f1"] for r in rows),
        "rouge": fmean(r["rouge"] for r in rows),
        "key_fact": (sum(facts) / len(facts)) if facts else None,
        "citation": f"{sum(cites)}/{len(cites)}",
        "chars": fmean(r["chars"] for r in rows),
    }


def run_compare(out: Path) -> None:
    from bot.answerers.retrieval import RetrievalAnswerer

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        settings, kb = build(Path(tmp))
        before = RetrievalAnswerer(settings.knowledge.model_copy(update={"lead_max_chars": 0}), kb)
        after = RetrievalAnswerer(settings.knowledge, kb)
        unwarmed = RetrievalAnswerer(settings.knowledge, kb)
        sets = {path: retrieval_items(path) for path in SETS}
        answer_timed(before, kb, "warm up the embedder")  # model first-call costs are not a question's
        warm_started = time.perf_counter()
        warmed_units = after.warm_up()
        warm_seconds = time.perf_counter() - warm_started
        rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
        latency: dict[tuple[str, int], list[float]] = {}
        examples: dict[str, tuple[str, str]] = {}
        for pass_number in (1, 2):
            for path, items in sets.items():
                for item in items:
                    runs = [("before", before), ("after", after)]
                    if pass_number == 1:
                        runs.append(("after, no warm-up", unwarmed))
                    for name, answerer in runs:
                        draft, ms = answer_timed(answerer, kb, item.question)
                        latency.setdefault((name, pass_number), []).append(ms)
                        if pass_number == 1 and name != "after, no warm-up":
                            rows.setdefault((path, name), []).append(score(item, draft))
                            if name == "after" and item.id in ("p-hawaii-cost", "p-heat-pack-price", "p-price-match",
                                                               "p-return-window", "h-gift-card-use"):
                                examples[item.question] = (draft.text, ", ".join(
                                    f"{s.title} › {s.heading}" for s in draft.sources))
        kb.close()
    seconds = time.perf_counter() - started
    lines = [
        "# Policy answers: the answer first (issue 18)",
        "",
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')} · {machine()} · {seconds:.0f} s",
        "- Command: `.venv/bin/python -m bench.policy_answers`",
        "- What: the retrieval answerer called directly on the retrieval questions of each set, over the "
        "shipped knowledge/. *Before*: the best chunk quoted whole (`knowledge.lead_max_chars = 0`, the "
        "old behaviour); *after*: the lead (defaults). Same index, same run, calls interleaved.",
        "- Metrics as in `supportbot eval`: token F1 and ROUGE-L against the reference; *key fact first*: "
        "the answer's first sentence states the item's `key_fact`; citation hits: an expected file is cited.",
        "- Lead weights tuned on bench/data/policy_tuning.jsonl (30 other questions), never on these sets.",
        "",
        "| test set | questions | answer | token F1 | ROUGE-L | key fact first | citation hits | mean chars |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, label in SETS.items():
        for name in ("before", "after"):
            s = summary(rows[(path, name)])
            fact = f"{s['key_fact']:.0%}" if s["key_fact"] is not None else "n/a"
            lines.append(f"| {label} (`{path}`) | {s['n']} | {name} | {s['f1']:.3f} | {s['rouge']:.3f} | {fact} | "
                         f"{s['citation']} | {s['chars']:.0f} |")
    lines += [
        "",
        "Latency of one retrieval answer (question embedding, hybrid search, unit selection), ms, "
        "all questions of the three sets, search caches cleared before every call:",
        "",
        "| answer | pass | p50 | p95 | max |",
        "|---|---|---|---|---|",
    ]
    for name, pass_number, label in (
        ("before", 1, "1"), ("before", 2, "2"),
        ("after", 1, "1 (units embedded at start-up by `warm_up()`)"), ("after", 2, "2"),
        ("after, no warm-up", 1, "1: each section's units embedded on its first question"),
    ):
        values = latency[(name, pass_number)]
        lines.append(f"| {name} | {label} | {percentile(values, 50):.1f} | {percentile(values, 95):.1f} | "
                     f"{max(values):.1f} |")
    lines += ["", f"`warm_up()` embedded {warmed_units} units of the knowledge base in {warm_seconds:.1f} s."]
    lines += ["", "Leads as customers see them (message text; the citation follows):", ""]
    for question, (text, cited) in examples.items():
        quoted = "\n".join(f"> {line}" for line in text.splitlines())
        lines += [f"**{question}**", "", quoted, ">", f"> — {cited}", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    sys.stdout.write("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="Markdown page to write (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="accepted for bench.run_all; this one is quick already")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(REPO))
    run_compare(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
