"""A real Chroma server (`chroma run`, shipped with the chromadb dependency) on 127.0.0.1.

chromadb is a dependency, so a missing `chroma` command is a broken install: the helper fails
the test instead of skipping it. The server listens on a free port and is stopped (and its
data folder removed, unless the caller gave one) when the `with` block ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMA = Path(sys.executable).parent / "chroma"
HEARTBEAT = "/api/v2/heartbeat"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log_path: Path, limit: int = 2000) -> str:
    try:
        return log_path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return "(no log)"


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chroma exited with {process.returncode}:\n{_log_tail(log_path)}")
        try:
            if httpx.get(url + HEARTBEAT, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a starting server; no event to wait on
    raise RuntimeError(f"chroma did not answer {HEARTBEAT} within {timeout:.0f}s:\n{_log_tail(log_path)}")


@contextmanager
def chroma_server(data_dir: Path | None = None, *, timeout: float = 60.0) -> Iterator[str]:
    """Yield the base URL (http://127.0.0.1:PORT) of a fresh Chroma server storing in `data_dir`."""
    if not CHROMA.exists():
        pytest.fail(f"{CHROMA} is missing: chromadb is a dependency and ships the `chroma` command")
    workdir = Path(tempfile.mkdtemp(prefix="supportbot-chroma-"))
    data = data_dir if data_dir is not None else workdir / "data"
    log_path = workdir / "chroma.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(CHROMA), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
            )
            try:
                _wait_until_ready(url, process, log_path, timeout)
                yield url
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
