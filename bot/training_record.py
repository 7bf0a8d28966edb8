"""The record of the last finished training run, `<state_dir>/training/last_run.json`.

The training job writes it at the end of every run (promoted, kept or failed) and reads it back
for "new labels since the last run"; the background seed run reads it to know how its child
ended; the App Home and `/supportbot status` show it. One module owns the format, so those
readers cannot drift apart. Reading is lenient: a missing or damaged file means "no run yet".
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.atomic import atomic_write_json
from bot.config import Settings

log = logging.getLogger(__name__)

LAST_RUN_FILE = "last_run.json"


@dataclass(frozen=True)
class TrainingRun:
    finished_at: str
    promoted: bool
    version: str
    summary: str
    report_path: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str = ""  # promoted, rejected or failed (training.run.Status)
    labels_until: str | None = None  # newest staff label the run exported (ISO time); None: kept from before


def last_run_path(settings: Settings) -> Path:
    return settings.state_dir / "training" / LAST_RUN_FILE


def read_last_training_run(path: Path) -> TrainingRun | None:
    """None when no run has finished yet; a damaged file is logged and treated the same."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("cannot read the last training run from %s (%s)", path, exc)
        return None
    if not isinstance(data, dict):
        log.warning("%s does not hold a JSON object; ignoring it", path)
        return None
    metrics = data.get("metrics")
    return TrainingRun(
        finished_at=str(data.get("finished_at") or ""),
        promoted=bool(data.get("promoted", False)),
        version=str(data.get("version") or ""),
        summary=str(data.get("summary") or ""),
        report_path=str(data.get("report_path") or ""),
        metrics=metrics if isinstance(metrics, dict) else {},
        status=str(data.get("status") or ""),
        labels_until=str(data["labels_until"]) if data.get("labels_until") else None,
    )


def last_training_run(settings: Settings) -> TrainingRun | None:
    return read_last_training_run(last_run_path(settings))


def write_last_training_run(settings: Settings, run: TrainingRun) -> None:
    atomic_write_json(last_run_path(settings), asdict(run))
