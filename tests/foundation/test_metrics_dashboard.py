"""The Grafana dashboard shipped in docs/ only queries metrics the bot exports (a renamed metric
would leave an ops team staring at empty panels)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

from bot import metrics
from bot.config import Settings

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def test_every_dashboard_query_names_an_exported_metric() -> None:
    metrics.watch_runtime(lambda: {"router": "v1", "domain_model": "base"}, knowledge=[])
    exported = {sample.name for family in metrics.REGISTRY.collect() for sample in family.samples}
    exported |= {family.name + suffix for family in metrics.REGISTRY.collect()
                 for suffix in ("", "_total", "_bucket", "_count", "_sum", "_info")}
    queried = {name for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
               for target in panel["targets"] for name in re.findall(r"supportbot_\w+", target["expr"])}
    assert queried and queried <= exported, sorted(queried - exported)


def test_a_scrape_names_the_router_and_adapter_versions_serving(
    settings_factory: Callable[..., Settings],
) -> None:
    """What `build_runtime` registers: the info metric an ops dashboard shows as "serving v0003"."""
    from bot.answerers.domain_model import build_domain_answerer
    from bot.factory import serving_versions

    settings = settings_factory()
    domain = build_domain_answerer(settings)  # nothing promoted: the base model serves
    router = SimpleNamespace(version="v0002")
    metrics.watch_runtime(lambda: serving_versions(router, domain))
    scraped = metrics.exposition().decode()
    assert 'supportbot_serving_info{domain_model="base",router="v0002"} 1.0' in scraped
