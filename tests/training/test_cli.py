"""`supportbot model list|promote|rollback` and `supportbot train export|run` as ops use them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import main as cli_main
from bot.registry import ArtifactRegistry
from tests.training.conftest import write_seed
from training.run import TrainingOutcome


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    seed = write_seed(tmp_path / "seed.jsonl")
    config = tmp_path / "config.toml"
    config.write_text(f'[app]\nstate_dir = "{tmp_path / "var"}"\n[training]\nseed_dataset = "{seed}"\n')
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(cli_main.app, ["--config", str(config), *args])

    return invoke


def add_version(root: Path, name: str, ppl: float) -> str:
    src = root.parent / f"src-{name}"
    src.mkdir(parents=True)
    (src / "adapter_config.json").write_text("{}")
    meta = {"data_hash": name * 8, "metrics": {"candidate": {"perplexity": ppl, "token_f1": 0.3,
                                                             "degenerate_rate": 0.0}},
            "gate": {"promote": True}}
    return ArtifactRegistry(root).add(src, meta).version


def test_model_commands_list_promote_and_roll_back(cli: Any, tmp_path: Path) -> None:
    listed = cli("model", "list")
    assert listed.exit_code == 0 and "no adapter versions yet" in listed.output
    root = tmp_path / "var" / "adapters"
    v1, v2 = add_version(root, "a", 9.5), add_version(root, "b", 7.25)
    assert cli("model", "promote", v1).exit_code == 0
    assert cli("model", "promote", v2).exit_code == 0
    table = cli("model", "list").output
    assert "v0001" in table and "7.25" in table
    assert [line for line in table.splitlines() if "*" in line and "v0002" in line]
    rolled = cli("model", "rollback")
    assert rolled.exit_code == 0 and "serving v0001" in rolled.output
    assert ArtifactRegistry(root).current_version() == v1
    assert "base model" in cli("model", "rollback").output
    unknown = cli("model", "promote", "v0042")
    assert unknown.exit_code != 0 and ArtifactRegistry(root).current_version() is None


def test_a_version_whose_gguf_copy_failed_cannot_be_promoted_by_hand(cli: Any, tmp_path: Path) -> None:
    root = tmp_path / "var" / "adapters"
    good = add_version(root, "a", 9.5)
    src = root.parent / "src-bad"
    src.mkdir(parents=True)
    (src / "adapter_config.json").write_text("{}")
    bad = ArtifactRegistry(root).add(src, {
        "gguf": {"status": "failed", "agreement": 0.62, "reason": "agreed at 62/100 positions"},
        "blocked": "its GGUF copy failed the llama.cpp check: agreed at 62/100 positions",
    }).version
    assert cli("model", "promote", good).exit_code == 0
    refused = cli("model", "promote", bad)
    assert refused.exit_code != 0  # `supportbot` prints a BotError as one line and exits 2
    assert f"{bad} cannot be promoted" in str(refused.exception) and "62/100" in str(refused.exception)
    assert ArtifactRegistry(root).current_version() == good
    listed = cli("model", "list").output
    assert "failed" in listed and "0.62" in listed


def test_train_export_writes_the_split_and_prints_the_data_report(cli: Any, tmp_path: Path) -> None:
    result = cli("train", "export", "--out", str(tmp_path / "export"))
    assert result.exit_code == 0, result.output
    assert "examples: 8" in result.output
    lines = (tmp_path / "export" / "train.jsonl").read_text().splitlines()
    assert lines and json.loads(lines[0])["messages"][-1]["role"] == "assistant"


def test_train_run_reports_the_outcome_and_fails_the_exit_code_when_busy(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = iter([TrainingOutcome("rejected", "kept v0001: perplexity 7.00 vs 7.00", version="v0002"),
                     TrainingOutcome("busy", "a training run is already in progress")])
    calls: list[bool] = []

    def fake_run(settings: Any, *, force: bool, progress: bool) -> TrainingOutcome:
        calls.append(force)
        return next(outcomes)

    monkeypatch.setattr("training.run.run_training", fake_run)
    first = cli("train", "run", "--force", "--json")
    assert first.exit_code == 0 and json.loads(first.output)["status"] == "rejected"
    busy = cli("train", "run")
    assert busy.exit_code == 1 and "already in progress" in busy.output
    assert calls == [True, False]
