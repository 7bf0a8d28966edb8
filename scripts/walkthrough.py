"""The README walk-through, reproduced offline: ask → staff correction → train → ask again.

Runs the real product on the bundled models, in one process that plays the running bot:

1. index the sample knowledge base (`knowledge/`) into a fresh state directory;
2. ask a plant-care question through the same pipeline as `supportbot ask` and Slack
   (`build_runtime` + `Pipeline.answer`), with the domain model warmed up as `supportbot serve`
   does, so it watches the adapter registry;
3. store the staff correction the way the Slack "Flag for retraining" modal does: the modal is
   built by `flag_modal`, filled in as Slack would return it, read back by
   `parse_flag_submission`, and saved with `ConversationStore.add_staff_label`;
4. run one training run (`training.run.run_training`, as `supportbot train run --force`);
5. wait for the running pipeline to hot-swap the promoted adapter, and ask again.

Nothing is faked: when the gate keeps the old model, or the new answer is no closer to the
staff's correction (token F1), the output says so and the exit code is 1.

    .venv/bin/python scripts/walkthrough.py --state-dir /tmp/wt --threads 1

About 8 minutes on a shared 2-core CPU with `--threads 1`, most of it fine-tuning (two threads
were far slower there while another job held the other core). Writes everything it printed to
`<state-dir>/walkthrough.json`; docs/walkthrough.md shows a real run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file, not as a module of the installed package
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

console = Console()

# A plant the seed dataset asks nothing about, so neither the base model nor the seeds answer it well.
DEFAULT_QUESTION = "How do I care for a Mexican butterwort?"
DEFAULT_CORRECTION = (
    "Mexican butterworts (Pinguicula) grow in summer and rest in winter. In summer give them bright "
    "light, such as an east window, a gritty mix of perlite, sand and a little peat, and rainwater "
    "or distilled water from a saucer. In winter they form small succulent rosettes: keep them "
    "almost dry and cooler. Their sticky leaves catch fungus gnats, so they need no feeding."
)
STAFF_USER = "U0STAFF01"
NOTE = "Walk-through: the base model invents facts about butterworts."
DEFAULT_EVAL_QUESTIONS = 6


class WalkthroughError(Exception):
    """A problem the person running the script can fix (printed as one line, exit code 2)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Reproduce the walk-through offline: ask, flag with a correction, train, ask again.",
    )
    parser.add_argument(
        "--state-dir", type=Path, required=True,
        help="A new or empty folder for this run's state (never the project's own var/).",
    )
    parser.add_argument(
        "--config", type=Path, default=REPO / "config.toml",
        help="config.toml to start from (default: the project's).",
    )
    parser.add_argument("--question", default=DEFAULT_QUESTION, help="The customer's question.")
    parser.add_argument("--correction", default=DEFAULT_CORRECTION, help="The staff's corrected answer.")
    parser.add_argument(
        "--epochs", type=int, default=None, help="training.epochs for this run (default: the config's)."
    )
    parser.add_argument(
        "--max-steps", type=int, default=None, help="training.max_steps for this run (default: the config's)."
    )
    parser.add_argument(
        "--eval-max-questions", type=int, default=DEFAULT_EVAL_QUESTIONS,
        help="training.eval_max_questions: held-out questions the gate generates answers for "
        f"(default {DEFAULT_EVAL_QUESTIONS}, half the shipped 12, to keep the run short on a CPU).",
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="models.torch_threads (default: the config's; 0 = one per CPU core).",
    )
    parser.add_argument(
        "--swap-timeout", type=float, default=60.0,
        help="Seconds to wait for the running pipeline to pick up a promoted adapter.",
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "max_steps", "eval_max_questions", "threads"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if not args.question.strip() or not args.correction.strip():
        parser.error("--question and --correction must not be empty")
    return args


def check_state_dir(state_dir: Path, configured: Path) -> Path:
    """The folder to use, resolved; refuses the project's own state and any folder already in use.

    The walk-through trains and promotes an adapter: in the configured state directory that
    would change what a real bot on this machine serves.
    """
    target = state_dir.expanduser().resolve()
    configured = configured.expanduser().resolve()
    if target == configured or configured in target.parents or target in configured.parents:
        raise WalkthroughError(
            f"--state-dir {target} overlaps the configured app.state_dir {configured}; "
            "pick a new folder such as /tmp/supportbot-walkthrough"
        )
    if target == REPO or REPO in target.parents:
        raise WalkthroughError(f"--state-dir {target} is inside the project; pick a folder outside {REPO}")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WalkthroughError(f"--state-dir {target} is not an empty folder; pick a new one")
    return target


def build_settings(args: argparse.Namespace, state_dir: Path) -> Any:
    from bot.config import load_settings

    overrides: dict[str, Any] = {
        "app.state_dir": str(state_dir),
        "knowledge.watch": False,
        "training.eval_max_questions": args.eval_max_questions,
    }
    if args.epochs is not None:
        overrides["training.epochs"] = args.epochs
    if args.max_steps is not None:
        overrides["training.max_steps"] = args.max_steps
    if args.threads is not None:
        overrides["models.torch_threads"] = args.threads
    return load_settings(args.config, overrides=overrides)


def slack_modal_submission(turn: Any, verdict: str, corrected: str, route: str, note: str) -> dict[str, Any]:
    """The flag modal as Slack returns it on submit: our own view plus the values typed in."""
    from bot.slack import ids
    from bot.slack.blocks import flag_modal

    view = flag_modal(
        turn_id=turn.id, question=turn.question, answer=turn.answer, route=turn.route,
        channel=turn.slack_channel, message_ts=turn.message_ts,
    )
    view["state"] = {"values": {
        ids.FLAG_VERDICT_BLOCK: {ids.FLAG_VERDICT_ACTION: {"type": "radio_buttons",
                                                           "selected_option": {"value": verdict}}},
        ids.FLAG_CORRECTED_BLOCK: {ids.FLAG_CORRECTED_ACTION: {"type": "plain_text_input", "value": corrected}},
        ids.FLAG_ROUTE_BLOCK: {ids.FLAG_ROUTE_ACTION: {"type": "static_select",
                                                       "selected_option": {"value": route}}},
        ids.FLAG_NOTE_BLOCK: {ids.FLAG_NOTE_ACTION: {"type": "plain_text_input", "value": note}},
    }}
    return view


def record_staff_label(store: Any, turn_id: int, correction: str, note: str) -> tuple[int, Any]:
    """What the modal's submit handler (bot/slack/listeners/flagging.py) does with the form."""
    from bot.slack.blocks import parse_flag_submission

    turn = store.get_turn(turn_id)
    if turn is None:
        raise WalkthroughError(f"turn {turn_id} is not in the conversation log")
    submission, errors = parse_flag_submission(slack_modal_submission(turn, "incorrect", correction, "domain", note))
    if submission is None:
        raise WalkthroughError(f"the flag form was refused: {errors}")
    label_id = store.add_staff_label(
        submission.turn_id, STAFF_USER, submission.verdict,
        corrected_answer=submission.corrected_answer, correct_route=submission.correct_route,
        note=submission.note,
    )
    return label_id, submission


def wait_for_adapter(domain: Any, version: str, timeout_s: float) -> float | None:
    """Seconds until the running domain answerer serves `version` (None: not within timeout_s)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if domain.current_version == version:
            return time.monotonic() - started
        time.sleep(0.25)
    return None


def in_training_split(run_dir: Path | None, question: str) -> bool | None:
    """Whether the exported training split holds the question (None: no export to read)."""
    from bot.memory.matching import canonical_question
    from training.dataset import read_jsonl_examples

    path = run_dir / "data" / "train.jsonl" if run_dir else None
    if path is None or not path.is_file():
        return None
    wanted = canonical_question(question)
    return any(canonical_question(ex.question) == wanted for ex in read_jsonl_examples(path))


def show_answer(title: str, answer: Any) -> None:
    from rich.panel import Panel

    meta = (f"route={answer.route} confidence={answer.confidence:.2f} model={answer.model_version or '-'} "
            f"router={answer.router_version or '-'} latency={answer.latency_ms:.0f}ms")
    if answer.fallback_reason:
        meta += f" fallback: {answer.fallback_reason}"
    console.print(Panel(answer.text, title=title, subtitle=meta, expand=False), highlight=False)


def answer_record(answer: Any, correction: str) -> dict[str, Any]:
    from bot.evaluation.metrics import token_f1

    return {
        "text": answer.text, "route": answer.route, "confidence": round(answer.confidence, 3),
        "reason": answer.reason, "model_version": answer.model_version,
        "router_version": answer.router_version, "latency_ms": round(answer.latency_ms),
        "fallback_reason": answer.fallback_reason, "turn_id": answer.turn_id,
        "token_f1_vs_correction": round(token_f1(answer.text, correction), 3),
    }


def run(args: argparse.Namespace, state_dir: Path) -> dict[str, Any]:
    from bot.cli.context import setup_logging
    from bot.factory import build_runtime
    from bot.interfaces import AskContext
    from training.run import run_training

    settings = build_settings(args, state_dir)
    setup_logging(settings.app.log_level)
    result: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"), "state_dir": str(state_dir),
        "question": args.question, "correction": args.correction, "timings_s": {},
        "training_config": {k: getattr(settings.training, k) for k in
                            ("epochs", "max_steps", "eval_max_questions", "lr", "lora_r", "batch_size")},
    }
    timings = result["timings_s"]

    console.rule("1. Index the sample knowledge base and load the bot")
    t0 = time.perf_counter()
    runtime = build_runtime(settings, watch=False)  # syncs knowledge/ into the fresh index
    try:
        runtime.domain.warm_up()  # as `supportbot serve`: load now and watch the adapter registry
        timings["index_and_load"] = round(time.perf_counter() - t0, 1)

        console.rule("2. A customer asks")
        console.print(f"[bold]customer>[/bold] {args.question}", highlight=False)
        t0 = time.perf_counter()
        before = runtime.pipeline.answer(args.question, AskContext(channel="cli", user="customer"))
        timings["ask_before"] = round(time.perf_counter() - t0, 1)
        show_answer("before", before)
        result["before"] = answer_record(before, args.correction)
        if before.turn_id is None:
            raise WalkthroughError("the answer was not logged, so there is nothing for staff to flag")
        if before.route != "domain":
            console.print(f"[yellow]note: this answer came from the {before.route} route, not the domain model; "
                          "the staff label below says it should have been domain.[/yellow]")

        console.rule("3. Staff flag it: Flag for retraining → Incorrect + corrected answer + route domain")
        label_id, submission = record_staff_label(runtime.store, before.turn_id, args.correction, NOTE)
        result["label"] = {"id": label_id, "turn_id": submission.turn_id, "staff_user": STAFF_USER,
                           "verdict": submission.verdict, "correct_route": submission.correct_route,
                           "corrected_answer": submission.corrected_answer, "note": submission.note}
        console.print(f"staff label {label_id} on turn {submission.turn_id}: verdict={submission.verdict} "
                      f"route={submission.correct_route}\ncorrected answer: {submission.corrected_answer}",
                      highlight=False)

        console.rule("4. Train (supportbot train run --force)")
        t0 = time.perf_counter()
        outcome = run_training(settings, store=runtime.store, force=True, progress=True)
        timings["train"] = round(time.perf_counter() - t0, 1)
        in_train = in_training_split(outcome.run_dir, args.question)
        result["training"] = {"status": outcome.status, "version": outcome.version, "summary": outcome.summary,
                              "report": str(outcome.report_path) if outcome.report_path else None,
                              "metrics": outcome.metrics, "correction_in_training_split": in_train}
        console.print(f"[bold]{outcome.status}[/bold] {outcome.version or ''}\n{outcome.summary}", highlight=False)
        for name, metrics in outcome.metrics.items():
            console.print(f"  {name:>12}: perplexity {metrics['perplexity']:.2f}, token F1 "
                          f"{metrics['token_f1']:.3f}, degenerate {metrics['degenerate_rate']:.0%}",
                          highlight=False)
        if outcome.report_path:
            console.print(f"  report: {outcome.report_path}", highlight=False)
        if in_train is False:
            console.print("[yellow]the corrected question landed in the held-out split, so the model "
                          "never trained on it[/yellow]")

        console.rule("5. The running bot picks up the new adapter; the customer asks again")
        swap_s = None
        if outcome.promoted and outcome.version:
            swap_s = wait_for_adapter(runtime.domain, outcome.version, args.swap_timeout)
            if swap_s is None:
                console.print(f"[red]the pipeline still serves {runtime.domain.current_version} "
                              f"{args.swap_timeout:.0f}s after {outcome.version} was promoted[/red]")
            else:
                console.print(f"hot-swapped to {outcome.version} {swap_s:.1f}s after the run ended, no restart")
        else:
            console.print(f"[yellow]the gate did not promote a new adapter; "
                          f"{runtime.domain.current_version} still serves[/yellow]")
        result["swap_s"] = None if swap_s is None else round(swap_s, 1)
        t0 = time.perf_counter()
        after = runtime.pipeline.answer(args.question, AskContext(channel="cli", user="customer"))
        timings["ask_after"] = round(time.perf_counter() - t0, 1)
        show_answer("after", after)
        result["after"] = answer_record(after, args.correction)
    finally:
        runtime.close()

    f1_before, f1_after = result["before"]["token_f1_vs_correction"], result["after"]["token_f1_vs_correction"]
    improved = bool(outcome.promoted and after.model_version == outcome.version and f1_after > f1_before)
    result["improved"] = improved
    verdict = "closer to" if f1_after > f1_before else "no closer to"
    console.print(f"token F1 against the staff correction: before {f1_before:.3f} ({before.model_version}), "
                  f"after {f1_after:.3f} ({after.model_version}): the answer is {verdict} the correction.",
                  highlight=False)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from bot.config import load_settings
    from bot.errors import BotError

    try:
        configured = load_settings(args.config).state_dir
        state_dir = check_state_dir(args.state_dir, configured)
        started = time.perf_counter()
        result = run(args, state_dir)
    except (WalkthroughError, BotError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        return 2
    result["timings_s"]["total"] = round(time.perf_counter() - started, 1)
    (state_dir / "walkthrough.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
    console.print(f"timings (s): {result['timings_s']}; everything above is in {state_dir / 'walkthrough.json'}",
                  highlight=False)
    return 0 if result["improved"] else 1


if __name__ == "__main__":
    sys.exit(main())
