"""With `knowledge.chroma_url` set, the index lives in a real Chroma server started by the test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.indexing.knowledge_base import KnowledgeBase

CHROMA = Path(sys.executable).parent / "chroma"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_heartbeat(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"chroma exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("chroma did not answer its heartbeat in time")


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    if not CHROMA.exists():
        pytest.fail(f"{CHROMA} is missing: chromadb is a dependency and ships the `chroma` command")
    port = _free_port()
    log = (tmp_path / "chroma.log").open("wb")
    process = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(tmp_path / "chroma-server"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_heartbeat(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_index_and_search_through_a_chroma_server(
    chroma_server: str, docs: Path, make_kb: Callable[..., KnowledgeBase], tmp_path: Path
) -> None:
    (docs / "returns.md").write_text("# Returns\n\nPots can be returned within 30 days.\n", encoding="utf-8")
    kb = make_kb(docs, **{"knowledge.chroma_url": chroma_server})
    assert kb.sync().added == ["returns.md"]
    assert kb.search("return a pot", k=1)[0].source.path == "returns.md"
    assert not (tmp_path / "var" / "chroma").exists()  # nothing embedded locally
    (docs / "returns.md").write_text("# Returns\n\nPots can be returned within 45 days.\n", encoding="utf-8")
    assert kb.sync().updated == ["returns.md"]
    kb.close()
    restarted = make_kb(docs, **{"knowledge.chroma_url": chroma_server})
    assert "45 days" in restarted.search("return a pot", k=1)[0].text  # served from the server
    assert restarted.sync().unchanged == 1


def test_unreachable_server_is_a_config_error(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    with pytest.raises(ConfigError, match="cannot reach the Chroma server"):
        make_kb(docs, **{"knowledge.chroma_url": f"http://127.0.0.1:{_free_port()}"}).sync()


def test_malformed_server_url_is_a_config_error(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    with pytest.raises(ConfigError, match="knowledge.chroma_url"):
        make_kb(docs, **{"knowledge.chroma_url": "chroma:8000"}).sync()
