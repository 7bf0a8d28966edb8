"""`supportbot index` reports what changed; `supportbot search` shows ranked, cited chunks."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from tests.knowledge.conftest import REPO


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., tuple[int, str]]:
    shutil.copytree(REPO / "knowledge", tmp_path / "knowledge")
    config = tmp_path / "config.toml"
    config.write_text('[app]\nstate_dir = "var"\n[knowledge]\ndir = "knowledge"\n', encoding="utf-8")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["--config", str(config), *args], env={"COLUMNS": "300"})
        return result.exit_code, result.output

    return run


def test_index_lists_changes_then_reports_nothing_new(run_cli: Callable[..., tuple[int, str]], tmp_path: Path) -> None:
    code, out = run_cli("index")
    assert code == 0, out
    assert "added  shipping.md" in out and "added  wholesale-terms.pdf" in out
    assert "8 added, 0 updated, 0 removed, 0 skipped" in out
    (tmp_path / "knowledge" / "contact-hours.txt").unlink()
    (tmp_path / "knowledge" / "notes.pdf").write_bytes(b"%PDF-1.4 corrupt")
    code, out = run_cli("index", "--strict")
    assert code == 1  # a skipped file fails a CI check
    assert "removed  contact-hours.txt" in out
    assert "skipped  notes.pdf: notes.pdf: the PDF cannot be read" in out
    assert "0 added, 0 updated, 1 removed, 1 skipped, 7 unchanged" in out


def test_search_shows_scores_and_citations(run_cli: Callable[..., tuple[int, str]]) -> None:
    assert run_cli("index")[0] == 0
    code, out = run_cli("search", "RR-ORC-1042", "-k", "2")
    assert code == 0, out
    first = next(line for line in out.splitlines() if line.startswith("1. "))
    assert re.match(r"1\. score 0\.\d{3} \(dense 0\.\d{3}, lexical 0\.\d{3}\)", first)
    assert "Prices and plans > How plant prices work - https://rareroots.example/help/pricing, updated 2025-09-30" in first
    assert any(line.startswith("2. ") for line in out.splitlines())
    code, out = run_cli("search", "do gift cards expire", "--json")
    rows = json.loads(out.splitlines()[-1])
    assert rows[0]["source"]["path"] == "gift-cards.html" and 0 < rows[0]["score"] <= 1


def test_search_before_indexing_says_to_index_first(run_cli: Callable[..., tuple[int, str]]) -> None:
    code, out = run_cli("search", "shipping")
    assert code == 1
    assert "run `supportbot index` first" in out
