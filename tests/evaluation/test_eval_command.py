"""`supportbot eval` writes a report a person can read, and refuses bad input before loading models."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import bot.factory
from bot.cli import main as cli
from bot.config import Settings
from bot.conversation_log.opening import open_store
from bot.factory import Runtime
from tests.evaluation.conftest import TESTSET, scripted_pipeline, write_testset


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Runtime]]:
    """Replace model loading with the scripted pipeline; records each runtime built."""
    built: list[Runtime] = []

    def build_runtime(settings: Settings, **_: Any) -> Runtime:
        store = open_store(settings)
        pipeline = scripted_pipeline(settings, store)
        domain = pipeline.answerers["domain"]
        built.append(Runtime(settings, store, pipeline, None, None, domain, [store.close]))  # type: ignore[arg-type]
        return built[-1]

    monkeypatch.setattr(bot.factory, "build_runtime", build_runtime)
    yield built


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["supportbot", *args])
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_eval_command_writes_markdown_json_and_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_models: list[Runtime]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[app]\nstate_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    testset = write_testset(tmp_path / "testset.jsonl", TESTSET, ['{"question": "broken"'])

    code = run_cli(monkeypatch, "--config", str(config), "eval", str(testset), "--out", str(tmp_path / "report"))

    assert code == 0
    [domain] = [runtime.pipeline.answerers["domain"] for runtime in fake_models]
    assert domain.calls[0] == "warm_up" and len(domain.calls) > 1  # loaded before any answer is timed
    captured = capsys.readouterr()
    assert f"{testset}:8: skipped: not valid JSON" in captured.err
    assert "7 questions: route accuracy 57%" in captured.out
    assert "1 malformed line(s) skipped" in captured.out
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    assert report["counts"] == {"items": 7, "skipped_lines": 1}
    assert report["command"].endswith(f"eval {testset} --out {tmp_path / 'report'}")
    assert (tmp_path / "report" / "report.md").read_text(encoding="utf-8").startswith("# Evaluation report")
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == ["confusion.png", "latency.png", "quality.png"]


def test_eval_command_compares_with_an_earlier_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_models: list[Runtime]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[app]\nstate_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    testset = write_testset(tmp_path / "testset.jsonl", TESTSET)
    assert run_cli(monkeypatch, "--config", str(config), "eval", str(testset), "--out", str(tmp_path / "a")) == 0

    code = run_cli(monkeypatch, "--config", str(config), "eval", str(testset), "--out", str(tmp_path / "b"),
                   "--compare", str(tmp_path / "a" / "report.json"))

    assert code == 0
    assert "0 question(s) changed" in capsys.readouterr().out  # same bot, same answers; only timings move
    markdown = (tmp_path / "b" / "report.md").read_text(encoding="utf-8")
    assert "| route accuracy | 0.571 | 0.571 | +0.000 | same |" in markdown
    assert f"## Changes since {tmp_path / 'a' / 'report.json'}" in markdown
    assert (tmp_path / "b" / "comparison.png").exists()


def test_eval_command_rejects_a_bad_compare_file_before_loading_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fake_models: list[Runtime]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[app]\nstate_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    testset = write_testset(tmp_path / "testset.jsonl", TESTSET)

    code = run_cli(monkeypatch, "--config", str(config), "eval", str(testset), "--compare", str(tmp_path / "nope.json"))

    assert code == 2
    assert "error: report not found" in capsys.readouterr().err
    assert fake_models == []  # no models were loaded for a run that could not be compared
