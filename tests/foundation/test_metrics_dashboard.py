"""The Grafana dashboard shipped in docs/ only queries metrics the bot exports (a renamed metric
would leave an ops team staring at empty panels)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bot import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def test_every_dashboard_query_names_an_exported_metric() -> None:
    metrics.watch_runtime(lambda: {"router": "v1", "domain_model": "base"}, knowledge=[])
    exported = {sample.name for family in metrics.REGISTRY.collect() for sample in family.samples}
    exported |= {family.name + suffix for family in metrics.REGISTRY.collect()
                 for suffix in ("", "_total", "_bucket", "_count", "_sum", "_info")}
    queried = {name for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
               for target in panel["targets"] for name in re.findall(r"supportbot_\w+", target["expr"])}
    assert queried and queried <= exported, sorted(queried - exported)
