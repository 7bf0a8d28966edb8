"""The per-run report: what was trained on, how it scored against what is served, and why.

Written for every run, promoted or not, so staff can see what a week of labels bought. Charts
are PNGs next to the Markdown, drawn on bare `Figure` objects: pyplot's global state is not
thread-safe, and a run started from Slack trains in a background thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bot.atomic import atomic_write_text
from bot.evaluation.charts import save_figure
from training.evaluate import EvalResult
from training.gate import GateDecision

log = logging.getLogger(__name__)

LOSS_PNG = "loss_curve.png"
BARS_PNG = "before_after.png"


def plot_loss_curve(losses: list[tuple[int, float]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    if losses:
        steps, values = zip(*losses, strict=True)
        ax.plot(steps, values, lw=1, alpha=0.5, label="step loss")
        window = max(1, len(values) // 20)
        if window > 1:
            smooth = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
                      for i in range(len(values))]
            ax.plot(steps, smooth, lw=2, label=f"mean of {window}")
        ax.legend()
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (assistant tokens)")
    ax.set_title("Fine-tune loss")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_before_after(results: dict[str, EvalResult], metric: str, path: Path) -> None:
    from matplotlib.figure import Figure

    names = list(results)
    panels = [("perplexity", "held-out perplexity (lower is better)"),
              (metric, f"{metric} (higher is better)"),
              ("degenerate_rate", "degenerate answers (lower is better)")]
    fig = Figure(figsize=(10, 3.2))
    axes = fig.subplots(1, 3)
    colours = ["#9e9e9e", "#64b5f6", "#43a047", "#ef6c00"]
    for ax, (key, title) in zip(axes, panels, strict=True):
        values = [results[n].metric(key) for n in names]
        bars = ax.bar(names, values, color=colours[: len(names)])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def _metrics_table(results: dict[str, EvalResult], metric: str) -> list[str]:
    gated = {"token_f1": "token F1", "rouge_l": "ROUGE-L"}
    headers = [f"{label} (gate)" if key == metric else label for key, label in gated.items()]
    lines = [
        f"| model | loss | perplexity | {headers[0]} | {headers[1]} | degenerate | questions |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r.loss:.3f} | {r.perplexity:.2f} | {r.token_f1:.3f} | "
            f"{r.rouge_l:.3f} | {r.degenerate_rate:.0%} | {r.generated} |"
        )
    return lines


def _answers_section(results: dict[str, EvalResult], limit: int = 5) -> list[str]:
    lines = ["## Answers side by side", ""]
    names = list(results)
    if not names or not results[names[0]].answers:
        return lines + ["(no answers generated: training.eval_max_questions = 0)", ""]
    for i, row in enumerate(results[names[0]].answers[:limit]):
        lines += [f"**Q: {row['question']}**", "", f"- reference: {row['reference']}"]
        for name in names:
            ans = results[name].answers[i]
            flag = f" _(degenerate: {ans['degenerate']})_" if ans["degenerate"] else ""
            text = " ".join(ans["answer"].split())[:600]
            lines.append(f"- {name}: {text}{flag}")
        lines.append("")
    return lines


def write_report(
    run_dir: Path,
    *,
    title: str,
    data_report: dict[str, Any],
    finetune: dict[str, Any],
    losses: list[tuple[int, float]],
    results: dict[str, EvalResult],
    decision: GateDecision,
    metric: str,
    version: str | None,
    promoted: bool,
) -> Path:
    """Markdown plus two PNGs in `run_dir`; returns the Markdown path."""
    plot_loss_curve(losses, run_dir / LOSS_PNG)
    plot_before_after(results, metric, run_dir / BARS_PNG)
    outcome = (f"**Promoted {version}**" if promoted
               else f"**Not promoted** (registered as {version} for inspection)" if version
               else "**Not promoted**")
    lines = [
        f"# {title}",
        "",
        f"{outcome}. Gate against {decision.reference}: " + "; ".join(decision.reasons) + ".",
        "",
        "## Data",
        "",
        f"- examples: {data_report.get('examples')} (train {data_report.get('train')}, "
        f"eval {data_report.get('eval')})",
        f"- by source: {data_report.get('by_source')}",
        f"- staff label mix: {data_report.get('label_mix')}; redactions: {data_report.get('redactions')}",
        "",
        "## Fine-tune",
        "",
        f"- steps: {finetune.get('steps')} (resumed from step {finetune.get('resumed_from', 0)}), "
        f"device {finetune.get('device')}",
        f"- wall time: {finetune.get('wall_s', 0):.0f} s, {finetune.get('tokens_per_s', 0):.0f} tokens/s",
        f"- first / last loss: {losses[0][1]:.3f} / {losses[-1][1]:.3f}" if losses else "- no steps run",
        "",
        f"![loss curve]({LOSS_PNG})",
        "",
        "## Held-out evaluation",
        "",
        *_metrics_table(results, metric),
        "",
        f"![before and after]({BARS_PNG})",
        "",
        *_answers_section(results),
    ]
    path = run_dir / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    log.info("training report written to %s", path)
    return path
