"""The shell snippets inside docker-compose.yml, run here against real or local stand-ins.

Compose cannot run here, but its small scripts can: the Chroma health check against a real
Chroma server, the adapter-sync loop against a local stand-in for vLLM's HTTP API, and the
`prepare` step on temp folders in place of the volumes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.compose_file import environment, interpolate, load_raw
from tests.servers.chroma import _free_port

ENV = {"SUPPORTBOT_DATABASE_PASSWORD": "pw", "SLACK_BOT_TOKEN": "xoxb-t", "SLACK_SIGNING_SECRET": "s"}


def local_env(*layers: dict[str, str]) -> dict[str, str]:
    """This process's environment without proxies (the scripts talk to 127.0.0.1), then `layers`."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    for layer in layers:
        env.update(layer)
    return env


def service(name: str) -> dict[str, Any]:
    return interpolate(load_raw(), ENV)["services"][name]


def shell_script(command: list[str]) -> str:
    """The script of a `[sh|bash, -c, SCRIPT]` command or health check."""
    start = command.index("-c")
    return command[start + 1]


# --- chroma health check ----------------------------------------------------------------------


def chroma_probe(port: int, path: str = "/api/v2/heartbeat") -> subprocess.CompletedProcess[str]:
    script = shell_script(service("chroma")["healthcheck"]["test"])
    assert "/dev/tcp/127.0.0.1/8000" in script and "/api/v2/heartbeat" in script
    script = script.replace("/dev/tcp/127.0.0.1/8000", f"/dev/tcp/127.0.0.1/{port}").replace(
        "/api/v2/heartbeat", path
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=20, env=local_env())


def test_chroma_health_check_passes_on_a_live_server_and_fails_otherwise(chroma_url: str) -> None:
    port = int(chroma_url.rsplit(":", 1)[1])
    assert chroma_probe(port).returncode == 0
    assert chroma_probe(port, "/api/v2/no-such-endpoint").returncode != 0  # answers, but not 200
    assert chroma_probe(_free_port()).returncode != 0  # nothing listening


# --- adapter-sync ------------------------------------------------------------------------------


class FakeVLLM:
    """vLLM's model list and runtime LoRA loading, as much as adapter-sync uses of them."""

    def __init__(self, served: list[str]) -> None:
        self.served = list(served)
        self.loads: list[dict[str, str]] = []
        self.refused: list[str] = []  # loads of a name already served (vLLM answers 400)
        self.list_calls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/v1/models":
                    self.send_error(404)
                    return
                fake.list_calls += 1
                # vLLM's separators: no spaces, ids next to the LoRA's path as `root`.
                body = json.dumps({"object": "list", "data": [
                    {"id": name, "object": "model", "root": f"/adapters/{name}-dir"} for name in fake.served
                ]}, separators=(",", ":")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length))
                if self.path != "/v1/load_lora_adapter" or payload["lora_name"] in fake.served:
                    fake.refused.append(str(payload.get("lora_name")))
                    self.send_error(400)
                    return
                fake.loads.append(payload)
                fake.served.append(payload["lora_name"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_vllm() -> Iterator[FakeVLLM]:
    fake = FakeVLLM(served=["base", "v0001"])
    yield fake
    fake.close()


def write_version(versions: Path, name: str, complete: bool = True) -> Path:
    folder = versions / name
    folder.mkdir(parents=True)
    if complete:
        (folder / "adapter_config.json").write_text('{"r": 16}', encoding="utf-8")
    return folder


def test_adapter_sync_loads_each_new_registry_version_once(tmp_path: Path, fake_vllm: FakeVLLM) -> None:
    versions = tmp_path / "adapters" / "versions"
    write_version(versions, "v0001")  # vLLM already serves it
    v2 = write_version(versions, "v0002")
    write_version(versions, ".staging-abc")  # a version still being copied in
    write_version(versions, "v0003", complete=False)  # no adapter files (yet)
    svc = service("adapter-sync")
    env = local_env(environment(svc), {"INFERENCE_URL": fake_vllm.url, "ADAPTERS_DIR": str(versions),
                                       "SYNC_INTERVAL_S": "0.1"})
    process = subprocess.Popen(["sh", "-c", shell_script(svc["command"])], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while fake_vllm.list_calls < 4 and time.monotonic() < deadline:
            time.sleep(0.05)  # the loop polls on its own schedule; wait for a few rounds
        assert fake_vllm.list_calls >= 4, "adapter-sync did not poll vLLM's model list"
        assert fake_vllm.loads == [{"lora_name": "v0002", "lora_path": str(v2)}]
        # A promotion later: the next round loads the new version, and only it.
        write_version(versions, "v0004")
        seen = fake_vllm.list_calls
        while fake_vllm.list_calls < seen + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [load["lora_name"] for load in fake_vllm.loads] == ["v0002", "v0004"]
        assert fake_vllm.refused == []  # never asks again for what vLLM already lists
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0]
    assert "loaded v0002" in output


def test_adapter_sync_reloads_everything_after_vllm_restarts(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    for name in ("v0001", "v0002"):
        write_version(versions, name)
    restarted = FakeVLLM(served=["base"])  # a fresh vLLM knows no runtime-loaded adapter
    svc = service("adapter-sync")
    env = local_env(environment(svc), {"INFERENCE_URL": restarted.url, "ADAPTERS_DIR": str(versions),
                                       "SYNC_INTERVAL_S": "0.1"})
    process = subprocess.Popen(["sh", "-c", shell_script(svc["command"])], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while len(restarted.loads) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(load["lora_name"] for load in restarted.loads) == ["v0001", "v0002"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        restarted.close()


# --- prepare --------------------------------------------------------------------------------


def run_prepare(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The prepare script with the image and volume paths moved under tmp_path."""
    script = shell_script(service("prepare")["command"])
    for path in ("/opt/supportbot-models", "/app/var"):
        assert path in script
    script = re.sub(r"(?<![\w.-])/models\b", str(tmp_path / "models"), script)  # the models volume
    script = script.replace("/opt/supportbot-models", str(tmp_path / "image-models"))
    script = script.replace("/app/var", str(tmp_path / "var"))
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("prepare hands the volumes to uid 10001, which only root may do")


@pytest.mark.usefixtures("as_root")
def test_prepare_puts_the_converted_base_model_in_the_models_volume(tmp_path: Path) -> None:
    converted = tmp_path / "image-models" / "SmolLM2-135M-Instruct.Q4_1-0123456789abcdef"
    converted.mkdir(parents=True)
    (converted / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    (converted / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "image-models" / "lora-gguf").mkdir()  # other cache entries are not models
    (tmp_path / "var").mkdir()
    result = run_prepare(tmp_path)
    assert result.returncode == 0, result.stderr
    base = tmp_path / "models" / "base"
    assert (base / "config.json").read_text(encoding="utf-8") == '{"model_type": "llama"}'
    assert (base / "model.safetensors").read_bytes() == b"weights"
    for path in (tmp_path / "var", base / "config.json"):
        assert path.stat().st_uid == 10001  # the image's non-root user can write the volumes
    # An operator's own base model is never overwritten.
    (base / "config.json").write_text('{"model_type": "mistral"}', encoding="utf-8")
    assert run_prepare(tmp_path).returncode == 0
    assert (base / "config.json").read_text(encoding="utf-8") == '{"model_type": "mistral"}'


@pytest.mark.usefixtures("as_root")
def test_prepare_fails_with_a_fix_when_there_is_no_base_model(tmp_path: Path) -> None:
    (tmp_path / "image-models").mkdir()
    (tmp_path / "var").mkdir()
    result = run_prepare(tmp_path)
    assert result.returncode != 0
    assert "put a Hugging Face model folder at" in result.stderr
    assert not (tmp_path / "models" / "base").exists()
    shutil.rmtree(tmp_path / "var")
