"""PNG charts for the report, drawn on bare `Figure` objects with the Agg canvas.

No pyplot: it keeps global state and picks a GUI backend, which a server or CI has no use for.
Each chart is written atomically, so a report folder never holds half an image.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from bot.atomic import atomic_write_bytes
from bot.config import ROUTES


def save_figure(fig: Any, path: Path) -> None:
    """PNG of a bare `Figure`, written atomically; no pyplot, so any thread may draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def confusion_chart(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    matrix = [[report["routing"]["confusion"][exp][act] for act in ROUTES] for exp in ROUTES]
    fig = Figure(figsize=(4.6, 3.8))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Greens")
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
    ax.set_xticks(range(len(ROUTES)), ROUTES)
    ax.set_yticks(range(len(ROUTES)), ROUTES)
    ax.set_xlabel("answered by")
    ax.set_ylabel("expected")
    ax.set_title(f"Routing (accuracy {report['routing']['accuracy'] or 0:.0%})")
    fig.colorbar(image, ax=ax, fraction=0.046)
    save_figure(fig, path)


def quality_chart(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    metrics = [("token_f1", "token F1"), ("rouge_l", "ROUGE-L"), ("citation_hit_rate", "citation hit")]
    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    width = 0.26
    for k, (key, label) in enumerate(metrics):
        # A route with nothing to score gets no bar rather than a bar at zero.
        scored = [(i, report["quality"][route][key]) for i, route in enumerate(ROUTES)
                  if report["quality"][route][key] is not None]
        bars = ax.bar([i + (k - 1) * width for i, _ in scored], [v for _, v in scored], width,
                      label=label, color=f"C{k}")
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(range(len(ROUTES)), ROUTES)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("expected route")
    ax.set_title("Answer quality")
    ax.legend(fontsize=8, loc="upper right")
    save_figure(fig, path)


def latency_chart(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    routes = [r for r in ROUTES if report["latency_ms"][r]["count"]]
    fig = Figure(figsize=(5.4, 3.4))
    ax = fig.add_subplot()
    width = 0.38
    for k, key in enumerate(("p50", "p95")):
        values = [report["latency_ms"][r][key] for r in routes]
        bars = ax.bar([i + (k - 0.5) * width for i in range(len(routes))], values, width, label=key)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(routes)), routes)
    ax.set_ylabel("ms")
    ax.set_xlabel("answered by")
    ax.set_title("Latency per route")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def comparison_chart(comparison: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    # Only the 0..1 metrics share an axis; latency and counts are in the table.
    rows = [
        m for m in comparison["metrics"]
        if isinstance(m["old"], float | int) and isinstance(m["new"], float | int)
        and "latency" not in m["metric"] and m["metric"] not in ("missed escalations", "degenerate answers")
    ]
    fig = Figure(figsize=(6.4, 0.32 * len(rows) + 1.2))
    ax = fig.add_subplot()
    positions = range(len(rows))
    ax.barh([p + 0.2 for p in positions], [m["old"] for m in rows], 0.4, label=comparison["old_label"], color="#bbbbbb")
    ax.barh([p - 0.2 for p in positions], [m["new"] for m in rows], 0.4, label="this run", color="#2e7d32")
    ax.set_yticks(list(positions), [m["metric"] for m in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_title("Before and after")
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, path)


def write_charts(report: dict[str, Any], out_dir: Path, comparison: dict[str, Any] | None) -> dict[str, str]:
    """Draw every chart that has data; returns chart name → file name relative to out_dir."""
    charts: dict[str, str] = {}
    if report["counts"]["items"]:
        confusion_chart(report, out_dir / "confusion.png")
        charts["confusion"] = "confusion.png"
    if any(report["quality"][r]["with_reference"] or report["quality"][r]["with_expected_source"] for r in ROUTES):
        quality_chart(report, out_dir / "quality.png")
        charts["quality"] = "quality.png"
    if report["latency_ms"]["all"]["count"]:
        latency_chart(report, out_dir / "latency.png")
        charts["latency"] = "latency.png"
    if comparison is not None and comparison["metrics"]:
        comparison_chart(comparison, out_dir / "comparison.png")
        charts["comparison"] = "comparison.png"
    return charts
