"""`supportbot memory list | search | remove`, as staff use them, on a real log and index."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.main import app
from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext
from tests.memory.conftest import SEED, write_seed

CORRECTION = "Cut black pitchers off at the base; they are old, not sick."


@pytest.fixture
def memory_cli(tmp_path: Path) -> Callable[..., tuple[int, str, BaseException | None]]:
    seed = write_seed(tmp_path / "seed.jsonl", SEED)
    (tmp_path / "knowledge").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[app]\nstate_dir = "var"\n[knowledge]\ndir = "knowledge"\n[training]\nseed_dataset = "{seed}"\n',
                      encoding="utf-8")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, BaseException | None]:
        result = runner.invoke(app, ["--config", str(config), "memory", *args], env={"COLUMNS": "300"})
        return result.exit_code, result.output, result.exception

    return run


def test_staff_list_search_and_remove_entries(memory_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'var' / 'supportbot.db'}")
    turn = store.log_turn("My Nepenthes pitchers are turning black", Answer(text="Orchids.", route="domain",
                          confidence=0.7, reason="t"), AskContext(channel="slack", user="U1"))
    store.add_staff_label(turn, "USTAFF", "incorrect", corrected_answer=CORRECTION)
    store.close()

    code, out, _ = memory_cli("list")
    assert code == 0 and f"turn:{turn}" in out and "(correction, domain)" in out and "5 entries" in out
    assert out.index(f"turn:{turn}") < out.index("seed:"), "staff entries are listed first"

    code, out, _ = memory_cli("search", "My Nepenthes pitchers are turning black!")
    first = next(line for line in out.splitlines() if line.startswith("1. "))
    assert code == 0 and f"turn:{turn}" in first and "verified: given as written" in first

    code, out, _ = memory_cli("search", "What are the symptoms of bacterial brown spot in orchids?")
    first = next(line for line in out.splitlines() if line.startswith("1. "))
    assert "symptoms of" in first and "verified" not in first

    code, out, _ = memory_cli("remove", f"turn:{turn}")
    assert code == 0 and f"removed turn:{turn}; 4 entries left" in out
    code, out, _ = memory_cli("list", "--source", "correction")
    assert "0 entries" in out

    code, _, error = memory_cli("remove", "seed:abc")
    assert code != 0 and "training.seed_dataset" in str(error)
