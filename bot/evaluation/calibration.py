"""From a judged eval run with the answer-or-hand-off decision open to calibration records, and
what any thresholds would have done with them.

`supportbot eval --calibrate` and `bench.handoff` both turn every judged draft into a record
(kind, evidence, verdict, the item, its rank among the answerer's drafts) and both report the
same "what if" table: per kind and overall, how many questions each budget's thresholds answer
right and wrong. The what-if replays the pipeline's rule on the records: per item, the first draft
(in rank order) whose evidence reaches its kind's threshold is the one shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.handoff import AnswerGate, Record, calibration_document, load_calibration


def calibration_records(results: Iterable[Any]) -> list[Record]:
    """Every judged draft of a run (as served: follow-ups in their conversation, not alone)."""
    records: list[Record] = []
    for result in results:
        if result.variant:  # the same follow-up again, out of its conversation: not how it is served
            continue
        ranks: dict[str, int] = {}
        for draft in result.considered:
            rank = ranks.get(draft["route"], 0)
            ranks[draft["route"]] = rank + 1
            if draft["evidence"] is not None and draft["verdict"] in ("right", "wrong"):
                records.append(Record(f"{draft['route']}/{draft['kind'] or '-'}", float(draft["evidence"]),
                                      draft["verdict"], result.id, rank))
    return records


def merge_calibration(path: Path, records: list[Record], source: str, created: str) -> list[Record]:
    """Write `records` to the calibration file at `path`, keeping the records of other items already
    there (several tuning sets calibrate together); returns every record now in the file."""
    from bot.atomic import atomic_write_json

    sources = [source]
    if path.exists():
        ids = {r.item for r in records}
        records = [r for r in load_calibration(path) if r.item not in ids] + records
        sources = sorted(set(json.loads(path.read_text(encoding="utf-8")).get("sources", [])) | {source})
    atomic_write_json(path, calibration_document(records, sources, created))
    return records


@dataclass(frozen=True)
class WhatIf:
    right: int
    wrong: int
    items: int  # items with at least one judged draft

    @property
    def answered(self) -> int:
        return self.right + self.wrong

    @property
    def wrong_rate(self) -> float | None:
        return self.wrong / self.answered if self.answered else None


def what_if(records: Iterable[Record], thresholds: Mapping[str, float]) -> dict[str, WhatIf]:
    """What the pipeline would show with `thresholds` (per item, the first draft in rank order that
    passes), overall ("all") and by the kind of the draft shown."""
    by_item: dict[str, list[Record]] = {}
    for record in records:
        by_item.setdefault(record.item, []).append(record)
    counts: dict[str, list[int]] = {"all": [0, 0, len(by_item)]}
    for drafts in by_item.values():
        for kind in {r.kind for r in drafts}:
            counts.setdefault(kind, [0, 0, 0])[2] += 1
    for rows in by_item.values():
        for record in sorted(rows, key=lambda r: r.rank):
            if record.evidence >= thresholds.get(record.kind, -float("inf")):
                for key in ("all", record.kind):
                    counts[key][0] += record.verdict == "right"
                    counts[key][1] += record.verdict == "wrong"
                break
    return {kind: WhatIf(*values) for kind, values in counts.items()}


def gate_for(records: list[Record], budget: float) -> AnswerGate:
    return AnswerGate.from_records(records, budget)
