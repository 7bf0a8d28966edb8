"""Domain-model fixtures: tiny random LoRA adapters, a registry to promote them, a fake OpenAI server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.registry import ArtifactRegistry

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_tiny_adapter(base_dir: Path, out: Path, seed: int, scale: float = 1.0) -> Path:
    """A random (non-zero) LoRA adapter on the tiny model, saved the way training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(scale)
    peft_model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="session")
def tiny_adapters(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters-src")
    return {
        "a": make_tiny_adapter(tiny_llm_dir, root / "a", seed=1, scale=8.0),
        "b": make_tiny_adapter(tiny_llm_dir, root / "b", seed=2, scale=8.0),
    }


@pytest.fixture
def domain_settings(settings_factory: Callable[..., Settings], tiny_llm_dir: Path) -> Callable[..., Settings]:
    """Settings for the HF backend on the tiny model; the guard is relaxed for random text."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "models.base_llm_path": str(tiny_llm_dir),
            "models.torch_threads": 1,
            "domain.backend": "hf",
            "domain.max_new_tokens": 24,
            "domain.degenerate_ngram_ratio": 1.0,
            "domain.refusal_phrases": [],
        }
        values.update({k.replace("__", "."): v for k, v in overrides.items()})
        return settings_factory(**values)

    return make


@pytest.fixture(scope="session")
def real_settings_factory(
    tmp_path_factory: pytest.TempPathFactory, bundled_model_cache: Path
) -> Callable[..., Settings]:
    """Settings for the real bundled models in a fresh state dir, sharing the session's converted model."""
    from bot.config import load_settings

    def make(name: str, **dotted: Any) -> Settings:
        root = tmp_path_factory.mktemp(name)
        (root / "config.toml").write_text("", encoding="utf-8")
        overrides = {"app.state_dir": str(root / "var"), "models.cache_dir": str(bundled_model_cache)}
        return load_settings(root / "config.toml", env={}, overrides={**overrides, **dotted})

    return make


@pytest.fixture
def promote(domain_settings: Callable[..., Settings]) -> Callable[[Settings, Path], str]:
    """Register an adapter folder as the next version and promote it, as training does."""

    def do(settings: Settings, adapter_dir: Path) -> str:
        registry = ArtifactRegistry(settings.state_dir / "adapters")
        info = registry.add(adapter_dir, {"source": "test"})
        registry.promote(info.version)
        return info.version

    return do


@dataclass
class FakeServerState:
    """What the fake server does next, and every request it received."""

    models: list[str] = field(default_factory=lambda: ["smollm2-base"])
    reply: str = "Water a Masdevallia when the moss feels almost dry, about twice a week."
    delay_s: float = 0.0
    fail_next: int = 0  # answer this many chat requests with HTTP 500 first
    fail_status: int = 500
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: FakeServerState

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.state.models]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        try:
            self._chat()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            return

    def _chat(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": "not found"}})
            return
        state = self.state
        with state.lock:
            state.requests.append(body)
            failing = state.fail_next > 0
            if failing:
                state.fail_next -= 1
        if state.delay_s:
            time.sleep(state.delay_s)  # simulates a slow server (the client's timeout is under test)
        if failing:
            self._json(state.fail_status, {"error": {"message": "internal error"}})
            return
        if body.get("model") not in state.models:
            self._json(404, {"error": {"message": f"model {body.get('model')} not found"}})
            return
        words = state.reply.split(" ")
        words = words[: max(1, int(body.get("max_tokens") or len(words)))]
        if not body.get("stream"):
            self._json(
                200,
                {
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "finish_reason": "stop"}
                    ],
                    "usage": {"completion_tokens": len(words)},
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


@dataclass
class FakeServer:
    url: str
    state: FakeServerState


@pytest.fixture
def fake_openai_server() -> Iterator[FakeServer]:
    """A real HTTP server on 127.0.0.1 (a free port) speaking the OpenAI chat-completions API."""
    state = FakeServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeServer(url=f"http://127.0.0.1:{server.server_address[1]}/v1", state=state)
    finally:
        server.shutdown()
        server.server_close()


# PEFT module name → llama.cpp tensor name, for an adapter shaped like the bundled GGUF's layers.
PEFT_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def make_bundled_shaped_adapter(out: Path, seed: int, scale: float = 0.05, rank: int = 4) -> Path:
    """A random PEFT LoRA adapter for the bundled SmolLM2 (shapes read from its GGUF), no model needed."""
    import gguf
    import numpy as np
    from safetensors.numpy import save_file

    from bot.models import bundled_gguf_path

    reader = gguf.GGUFReader(str(bundled_gguf_path()))
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}  # ggml order: [in, out]
    n_blocks = int(reader.fields["llama.block_count"].contents())
    rng = np.random.default_rng(seed)
    tensors = {}
    for block in range(n_blocks):
        for module, gguf_name in PEFT_TO_GGUF.items():
            fan_in, fan_out = shapes[f"blk.{block}.{gguf_name}.weight"]
            key = f"base_model.model.model.layers.{block}.{module}"
            tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, fan_in)) * scale).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((fan_out, rank)) * scale).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": sorted(m.split(".")[-1] for m in PEFT_TO_GGUF),
        "task_type": "CAUSAL_LM",
        "bias": "none",
        "lora_dropout": 0.0,
        "base_model_name_or_path": None,
    }
    (out / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out
