"""Every saved adapter gets a GGUF copy that llama.cpp must apply the way peft does.

Real bundled SmolLM2 (its float copy for HF + peft, its 4-bit GGUF for llama.cpp) with small
random adapters: marked real_models, run in CI.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.answerers.domain_model import DomainAnswerer
from bot.config import Settings
from bot.interfaces import AskContext
from bot.llm import lora_gguf
from bot.llm.backend import llama_cpp_available
from bot.llm.gguf_check import write_and_check_gguf
from bot.llm.lora_gguf import ADAPTER_GGUF
from bot.llm.selection import select_backend
from bot.model_assets import base_llm_dir, bundled_gguf_path
from bot.registry import ArtifactRegistry, RegistryError
from bot.testing.tiny_models import make_bundled_shaped_adapter

pytestmark = [
    pytest.mark.real_models,
    pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python is not installed"),
]


@pytest.fixture(scope="module")
def real_settings(real_settings_factory: Callable[..., Settings]) -> Settings:
    return real_settings_factory("gguf-check", **{
        "domain.backend": "llamacpp",
        "domain.max_new_tokens": 12,
        "training.gguf_check_prompts": [
            "How often should I water a Phalaenopsis orchid?",
            "What soil mix does a Nepenthes need?",
            "When is the best time to repot a succulent?",
        ],
    })


@pytest.fixture(scope="module")
def base_dir(real_settings: Settings) -> Path:
    return base_llm_dir(real_settings)


def test_a_faithful_copy_is_written_and_passes(real_settings, base_dir, tmp_path):
    adapter = make_bundled_shaped_adapter(tmp_path / "adapter", seed=5, scale=0.06)
    check = write_and_check_gguf(real_settings, adapter, base_dir)
    assert check.status == "passed", check.reason
    assert check.agreement is not None and check.agreement >= real_settings.training.gguf_agreement_threshold
    assert check.positions == 3 * real_settings.training.gguf_check_tokens
    assert (adapter / ADAPTER_GGUF).stat().st_size > 0
    assert "positions" in check.reason and not check.blocks_promotion


def test_a_conversion_bug_fails_the_check_and_the_version_is_never_promoted(
    real_settings, base_dir, tmp_path, monkeypatch
):
    """Forgetting llama.cpp's q/k row permutation is the classic slip; the check catches it."""
    adapter = make_bundled_shaped_adapter(tmp_path / "adapter", seed=5, scale=0.06)
    monkeypatch.setattr(lora_gguf, "_permute_rows", lambda weights, n_head: weights)
    check = write_and_check_gguf(real_settings, adapter, base_dir)
    assert check.status == "failed" and check.blocks_promotion
    assert check.agreement is not None and check.agreement < real_settings.training.gguf_agreement_threshold

    registry = ArtifactRegistry(tmp_path / "adapters")
    good = registry.add(make_bundled_shaped_adapter(tmp_path / "good", seed=1, scale=0.01), {})
    registry.promote(good.version)
    bad = registry.add(adapter, {"gguf": check.as_metadata(), "blocked": f"GGUF check: {check.reason}"})
    with pytest.raises(RegistryError, match="cannot be promoted"):
        registry.promote(bad.version)
    assert registry.current_version() == good.version


def test_a_corrupt_gguf_adapter_is_refused_and_the_served_one_stays(real_settings, tmp_path):
    registry = ArtifactRegistry(tmp_path / "adapters")
    good_src = make_bundled_shaped_adapter(tmp_path / "good", seed=3, scale=0.06)
    lora_gguf.peft_adapter_to_gguf(good_src, bundled_gguf_path(), good_src / ADAPTER_GGUF)
    good = registry.add(good_src, {})
    registry.promote(good.version)
    answerer = DomainAnswerer(real_settings.domain, backend=lambda: select_backend(real_settings), registry=registry)
    try:
        answerer.warm_up()
        before = answerer.answer("How often should I water a Masdevallia orchid?", AskContext())
        bad_src = tmp_path / "bad"
        shutil.copytree(good_src, bad_src)
        data = (bad_src / ADAPTER_GGUF).read_bytes()
        (bad_src / ADAPTER_GGUF).write_bytes(data[: len(data) // 3])  # a copy cut short
        bad = registry.add(bad_src, {})
        registry.promote(bad.version)
        answerer.refresh_adapter(wait=True)
        after = answerer.answer("How often should I water a Masdevallia orchid?", AskContext())
    finally:
        answerer.close()
    assert before.model_version == after.model_version == good.version
    assert after.text == before.text
