"""`supportbot router train` and `supportbot router explain`, as a support engineer runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bot.cli.main as cli_main
import bot.cli.router as cli_router
from bot.config import load_settings
from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext
from tests.router.conftest import SEED_COUNT, SEED_FILE


@pytest.fixture
def cli(tmp_path: Path, cached_embedder: Any, fake_kb: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[app]\nstate_dir = "var"\n[router]\nseed_file = "{SEED_FILE}"\ncalibration_folds = 3\n'
        f'[training]\nseed_dataset = "missing.jsonl"\n',
        encoding="utf-8",
    )
    monkeypatch.setattr("bot.model_assets.load_embedder", lambda settings: cached_embedder)
    monkeypatch.setattr(cli_router, "open_knowledge", lambda settings, embedder: fake_kb)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(cli_main.app, ["--config", str(config), "router", *args])

    invoke.settings = lambda: load_settings(config, env={})  # type: ignore[attr-defined]
    return invoke


def test_train_prints_accuracy_confusion_matrix_and_version(cli: Any) -> None:
    settings = cli.settings()
    store = ConversationStore.open(settings.database_url)
    turn = store.log_turn("Do you sell terrarium kits?", Answer(text="...", route="domain", confidence=0.6,
                                                                reason="t"), AskContext())
    store.add_staff_label(turn, "USTAFF", "incorrect", correct_route="retrieval")
    store.close()
    result = cli("train")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "Cross-validated accuracy" in out and "macro-F1" in out
    assert "Confusion matrix" in out and "escalate" in out
    assert f"{SEED_COUNT} seed, 1 staff" in out
    assert "Saved router v0001" in out and "promoted" in out
    assert "KB best score and margin" in out
    assert "no domain questions" in out  # the missing domain dataset is reported, not fatal


def test_explain_shows_probabilities_topics_and_signals(cli: Any) -> None:
    zero_shot = cli("explain", "Do you ship to Canada?")
    assert zero_shot.exit_code == 0, zero_shot.output
    assert "zero-shot" in zero_shot.output
    assert cli("train").exit_code == 0
    result = cli("explain", "Do you ship to Canada?")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Route retrieval" in out and "Router version: v0001" in out
    assert "shipping_zones_and_times" in out
    for signal in ("kb_best_score", "kb_score_margin", "nearest_similarity"):
        assert signal in out
    as_json = json.loads(cli("explain", "--json", "My order 12345 never arrived").stdout)
    assert as_json["route"] == "escalate"
    assert as_json["top_topics"][0]["topic"] == "my_order_status"


def test_explain_rejects_an_empty_question(cli: Any) -> None:
    result = cli("explain", "   ")
    assert result.exit_code == 2
    assert "empty" in result.output
