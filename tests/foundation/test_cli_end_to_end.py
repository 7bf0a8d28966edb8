"""`supportbot ask --json` and the console chat answer from the sample knowledge base, end to end.

Real embedder, real Chroma, real SQLite log; the domain model is the tiny random Llama so the
run stays fast. The question is a shipping-policy one, so it must come from knowledge/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, knowledge: Path, llm: Path) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
[app]
state_dir = "{tmp_path / 'var'}"
[models]
base_llm_path = "{llm}"
[knowledge]
dir = "{knowledge}"
watch = false
[router]
seed_file = "{REPO / 'data' / 'seed_routes.yaml'}"
[training]
seed_dataset = "{REPO / 'data' / 'seed_domain.jsonl'}"
[domain]
backend = "hf"
""",
        encoding="utf-8",
    )
    return cfg


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SUPPORTBOT_"))}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "bot.cli.main", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_ask_json_answers_from_knowledge_and_logs_turn(
    tmp_path: Path, sample_knowledge: Path, tiny_llm_dir: Path
) -> None:
    cfg = write_config(tmp_path, sample_knowledge, tiny_llm_dir)
    result = cli("--config", str(cfg), "ask", "--json", "How long does shipping to Canada take?", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = json.loads(result.stdout)
    assert answer["route"] == "retrieval"
    assert any("shipping" in src["path"] for src in answer["sources"])
    assert "Canada" in answer["text"]
    assert answer["turn_id"] >= 1
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'supportbot.db'}")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT question, route, channel FROM turns WHERE id = :i"),
                           {"i": answer["turn_id"]}).one()
    assert row == ("How long does shipping to Canada take?", "retrieval", "cli")


@pytest.mark.slow
def test_serve_without_slack_tokens_opens_console_chat(
    tmp_path: Path, sample_knowledge: Path, tiny_llm_dir: Path
) -> None:
    cfg = write_config(tmp_path, sample_knowledge, tiny_llm_dir)
    result = cli("--config", str(cfg), "serve", cwd=tmp_path,
                 stdin="How long does shipping to Canada take?\nexit\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "SLACK_BOT_TOKEN is not set" in result.stderr
    assert "bot>" in result.stdout
    assert "route=retrieval" in result.stdout
    assert "source:" in result.stdout


@pytest.mark.slow
def test_the_console_chat_reads_like_a_chat_and_keeps_its_log_in_a_file(
    tmp_path: Path, sample_knowledge: Path, tiny_llm_dir: Path
) -> None:
    """Piped questions all get their answer, the follow-up is read with the conversation, and the
    INFO lines that used to land between prompt and answer go to the log file instead."""
    cfg = write_config(tmp_path, sample_knowledge, tiny_llm_dir)
    result = cli("--config", str(cfg), "chat", cwd=tmp_path,
                 stdin="Do you ship to Canada?\nAnd how much is it?\nexit\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("bot>") == 2, result.stdout
    assert "read with the conversation as: And how much is it? (Canada" in result.stdout, result.stdout
    chatter = result.stdout + result.stderr.split("Type 'exit' to quit.")[-1]
    assert "answered turn=" not in chatter, "no INFO line in the customer's view"
    log = (tmp_path / "var" / "logs" / "console.log").read_text(encoding="utf-8")
    assert "answered turn=" in log and "route=retrieval" in log
