"""Domain-model fixtures: tiny random LoRA adapters, a registry to promote them, a fake OpenAI server
(the doubles themselves are in `bot.testing`, which the benchmarks share)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.registry import ArtifactRegistry
from bot.testing.fake_openai import FakeServer, serve_fake_openai
from bot.testing.tiny_models import make_tiny_adapter


@pytest.fixture(scope="session")
def tiny_adapters(tiny_llm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters-src")
    return {
        "a": make_tiny_adapter(tiny_llm_dir, root / "a", seed=1, scale=8.0),
        "b": make_tiny_adapter(tiny_llm_dir, root / "b", seed=2, scale=8.0),
    }


@pytest.fixture
def domain_settings(settings_factory: Callable[..., Settings], tiny_llm_dir: Path) -> Callable[..., Settings]:
    """Settings for the HF backend on the tiny model; the guard is relaxed for random text. These
    tests exercise the model's own answers, which reach a customer only when the model may answer."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "domain.model_answers": "always",
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
    """Settings for the real bundled models in a fresh state dir, sharing the session's converted model;
    the model may answer, since these tests are about what it says and how it is served."""
    from bot.config import load_settings

    def make(name: str, **dotted: Any) -> Settings:
        root = tmp_path_factory.mktemp(name)
        (root / "config.toml").write_text("", encoding="utf-8")
        overrides = {"app.state_dir": str(root / "var"), "models.cache_dir": str(bundled_model_cache),
                     "domain.model_answers": "always"}
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


@pytest.fixture
def fake_openai_server() -> Iterator[FakeServer]:
    """A real HTTP server on 127.0.0.1 (a free port) speaking the OpenAI chat-completions API."""
    with serve_fake_openai() as server:
        yield server
