"""Answer or hand off: calibrate the evidence thresholds on the tuning sets, and show the trade-off.

    .venv/bin/python -m bench.handoff            # writes data/answer_calibration.json and docs/benchmarks/handoff.md
    .venv/bin/python -m bench.handoff --quick    # one tuning set, nothing written to data/

A fresh install (sample knowledge/, seed router and memory, bundled models, `domain.model_answers
= "never"`) answers every tuning question with the answer-or-hand-off decision open; every draft
each answerer proposes is judged (`bot.evaluation.judge`) and kept with its kind and evidence: that
is the shipped calibration file, from which the bot chooses its thresholds at start for
`answering.wrong_answer_budget`. The page shows, for a range of budgets, the thresholds chosen and
what they would have done on the tuning questions: resolution (right answers among those a bot
should answer) and the wrong-answer rate, per kind and overall. Only tuning sets are used; the
held-out sets are reported by `supportbot eval` (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.page import page_arguments, run_stamp, write_page

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "handoff.md"
CALIBRATION = REPO / "data" / "answer_calibration.json"
TUNING = [
    "bench/data/judged_tuning.jsonl",
    "bench/data/judged_tuning_2.jsonl",
    "bench/data/judged_tuning_3.jsonl",
    "bench/data/policy_tuning.jsonl",
    "bench/data/conversations_tuning.jsonl",
]
BUDGETS = (0.02, 0.05, 0.10, 0.15, 0.20, 1.0)


def fresh_runtime(tmp: Path, overrides: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    from bot.config import load_settings
    from bot.factory import build_runtime

    shutil.copytree(REPO / "knowledge", tmp / "knowledge")
    (tmp / "config.toml").write_text('[app]\nstate_dir = "var"\n', encoding="utf-8")
    settings = load_settings(tmp / "config.toml", env={}, overrides={
        "knowledge.dir": str(tmp / "knowledge"),
        "router.seed_file": str(REPO / "data" / "seed_routes.yaml"),
        "training.seed_dataset": str(REPO / "data" / "seed_domain.jsonl"),
        "app.glossary_file": str(REPO / "data" / "glossary.yaml"),
        "answering.calibration_file": "",
        **(overrides or {}),
    })
    return settings, build_runtime(settings, open_gate=True)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = page_arguments(__doc__, OUT)
    parser.add_argument("--details", type=Path, help="also write every judged draft with its text (JSON), to read")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for the run (e.g. knowledge.lead_max_chars=300); the calibration file is "
                        "then not written")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    import logging

    from bot.evaluation.calibration import calibration_records, gate_for, what_if
    from bot.evaluation.runner import load_testset, run_evaluation
    from bot.handoff import NEVER, calibration_document

    logging.disable(logging.WARNING)
    sets = [s for s in TUNING if (REPO / s).exists()][: 1 if args.quick else None]
    records = []
    details = []
    should_answer = {"domain": 0, "retrieval": 0}
    with tempfile.TemporaryDirectory(prefix="bench-handoff-") as tmp:
        overrides = dict(item.split("=", 1) for item in args.set)
        settings, runtime = fresh_runtime(Path(tmp), overrides)
        try:
            for name in sets:
                items, _ = load_testset(REPO / name)
                results = run_evaluation(runtime.pipeline, items)
                records += calibration_records(results)
                details += [{"id": r.id, "question": r.question, "read_as": r.standalone_question,
                             "considered": r.considered} for r in results if not r.variant]
                for item in items:
                    if item.expected_route in should_answer:
                        should_answer[item.expected_route] += 1
                sys.stderr.write(f"{name}: {len(items)} items\n")
        finally:
            runtime.close()
    created = datetime.now(UTC).isoformat(timespec="seconds")
    if args.details:
        import json

        args.details.write_text(json.dumps(details, indent=1, ensure_ascii=False), encoding="utf-8")
    if not args.quick and not args.set:
        from bot.atomic import atomic_write_json

        atomic_write_json(CALIBRATION, calibration_document(records, sets, created))
    kinds = sorted({r.kind for r in records})
    total_should = sum(should_answer.values())
    lines = [
        "# Answer or hand off: the evidence thresholds and what they cost",
        "",
        run_stamp("bench.handoff", argv, "one tuning set" if args.quick else ""),
        f"- {os.cpu_count()} CPUs; {(time.perf_counter() - started) / 60:.1f} min; tuning sets: "
        + ", ".join(f"`{s}`" for s in sets),
        f"- {len(records)} judged drafts ({total_should} questions a bot should answer: "
        f"{should_answer['domain']} plant care, {should_answer['retrieval']} policy); written to "
        f"`data/answer_calibration.json`" + (" (not in a quick run)" if args.quick else ""),
        "",
        "Each kind's threshold is the lowest evidence at which that kind's answers on these questions were "
        "wrong at most the budget's share of the time (`bot.handoff.choose_threshold`); an alternative (an "
        "excerpt after a similar answer) is calibrated on the questions whose earlier drafts fall below "
        "theirs. *Resolution*: right answers among the questions a bot should answer; *wrong*: wrong "
        "answers among the answers given.",
        "",
        "## Overall, by budget",
        "",
        "| wrong-answer budget | answered | right | wrong | wrong-answer rate | resolution |",
        "|---|---|---|---|---|---|",
    ]
    for budget in BUDGETS:
        gate = gate_for(records, budget)
        outcome = what_if(records, gate.thresholds)["all"]
        label = "none (every draft shown)" if budget >= 1 else f"{budget:.0%}"
        if budget == settings.answering.wrong_answer_budget:
            label += " (shipped)"
        lines.append(f"| {label} | {outcome.answered} | {outcome.right} | {outcome.wrong} | {_pct(outcome.wrong_rate)} | "
                     f"{_pct(outcome.right / total_should if total_should else None)} |")
    lines += ["", "## Per kind, by budget", "",
              "| kind | budget | threshold | answered | right | wrong | wrong-answer rate |", "|---|---|---|---|---|---|---|"]
    for kind in kinds:
        for budget in BUDGETS[:-1]:
            thresholds = gate_for(records, budget).thresholds
            threshold = thresholds.get(kind)
            outcome = what_if(records, thresholds).get(kind)
            if outcome is None:
                continue
            shown = "never shown" if threshold == NEVER else f"{threshold:.3f}"
            lines.append(f"| {kind} | {budget:.0%} | {shown} | {outcome.answered} | {outcome.right} | "
                         f"{outcome.wrong} | {_pct(outcome.wrong_rate)} |")
        everything = what_if(records, {})[kind]
        lines.append(f"| {kind} | none | – | {everything.answered} | {everything.right} | {everything.wrong} | "
                     f"{_pct(everything.wrong_rate)} |")
    lines += [
        "",
        "A kind's rows count its drafts where they would be shown: an excerpt only where the similar answer "
        "before it is held back (so with no thresholds, \"none\", an excerpt is never shown). `@follow-up` kinds are answers to follow-ups read with their conversation, "
        "calibrated apart: with the same evidence they are right less often than first questions.",
        "",
    ]
    write_page(args.out, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
