"""`supportbot actions` serves Rasa on the configured address until interrupted."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from tests.rasa.conftest import webhook_payload

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("ignore:Your versions of rasa and rasa_sdk might not be compatible")


def _lines(stream, sink: queue.Queue[str]) -> None:
    for line in stream:
        sink.put(line)
    sink.put("")


def test_actions_command_serves_rasa_on_the_configured_address(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    config = tmp_path / "cli.toml"
    config.write_text(
        f'[app]\nstate_dir = "{tmp_path / "var"}"\n\n[rasa]\nhost = "127.0.0.1"\nport = 0\n',
        encoding="utf-8",
    )
    env = {**os.environ, "COLUMNS": "300", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.rasa.cli_harness", "--config", str(config), "actions"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, output), daemon=True).start()
    seen: list[str] = []
    try:
        url = None
        while url is None:
            line = output.get(timeout=60)
            seen.append(line)
            assert line, "server exited before listening:\n" + "".join(seen)
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)/webhook", line)
            url = match.group(1) if match else None

        resp = httpx.post(f"{url}/webhook", json=webhook_payload("action_support_answer", "cli-user", "Do you ship to Canada?"),
                          timeout=30)
        assert resp.status_code == 200
        assert resp.json()["responses"][0]["text"] == "We ship live plants from March to October."

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = ConversationStore.open(settings_factory(**{"app.state_dir": str(tmp_path / "var")}).database_url)
    try:
        turn = store.last_turn_for("rasa", "cli-user")
        assert turn is not None and turn.route == "retrieval"
    finally:
        store.close()


def test_actions_command_reports_a_busy_port_without_loading_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    import bot.factory
    from bot.cli import main as cli

    loaded: list[object] = []
    monkeypatch.setattr(bot.factory, "build_runtime", lambda *a, **k: loaded.append(a))
    config = tmp_path / "cli.toml"
    config.write_text(f'[app]\nstate_dir = "{tmp_path / "var"}"\n', encoding="utf-8")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setattr(sys, "argv", ["supportbot", "--config", str(config), "actions",
                                          "--host", "127.0.0.1", "--port", str(port)])
        with pytest.raises(SystemExit) as exited:
            cli.main()

    assert exited.value.code == 2
    assert f"error: rasa.port: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert loaded == []
