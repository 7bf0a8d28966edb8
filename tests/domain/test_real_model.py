"""The real bundled SmolLM2: converted once from its GGUF, it answers a plant-care question.

Marked `real_models`: the conversion takes about 35 s, so it runs in CI but not in the quick loop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.answerers.domain_model import build_domain_answerer
from bot.config import Settings
from bot.interfaces import AskContext
from bot.llm.backend import AdapterRef, GenerationParams, llama_cpp_available
from bot.testing.tiny_models import make_bundled_shaped_adapter

pytestmark = pytest.mark.real_models

QUESTION = "How often should I water a Masdevallia orchid?"


@pytest.fixture(scope="module")
def real_settings(real_settings_factory: Callable[..., Settings]) -> Settings:
    return real_settings_factory("real-domain", **{"domain.backend": "hf", "domain.max_new_tokens": 40})


def test_bundled_model_converts_and_answers_a_plant_question(real_settings: Settings):
    answerer = build_domain_answerer(real_settings)
    try:
        answerer.warm_up()
        draft = answerer.answer(QUESTION, AskContext())
    finally:
        answerer.close()
    words = draft.text.split()
    assert draft.model_version == "base"
    assert 5 <= len(words) <= 40
    plant_words = {"water", "watering", "watered", "orchid", "orchids", "masdevallia", "plant", "plants", "soil"}
    assert plant_words & {w.strip(".,;:!").lower() for w in words}, draft.text


@pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python is not installed")
def test_llamacpp_applies_a_converted_adapter_like_peft_does(real_settings: Settings, tmp_path: Path):
    """The PEFT → GGUF conversion (names, q/k row permutation, alpha) gives the same greedy text."""
    from bot.llm.hf import HFBackend
    from bot.llm.llamacpp import LlamaCppBackend

    adapter = AdapterRef("v0001", make_bundled_shaped_adapter(tmp_path / "adapter", seed=5, scale=0.06))
    messages = [{"role": "user", "content": QUESTION}]
    params = GenerationParams(max_new_tokens=12)
    hf_settings = real_settings.model_copy(
        update={"domain": real_settings.domain.model_copy(
            update={"hf": real_settings.domain.hf.model_copy(update={"quantization": "none"})})}
    )
    texts = {}
    for name, backend in (("hf", HFBackend(hf_settings)), ("llamacpp", LlamaCppBackend(real_settings))):
        base = backend.load(None)
        tuned = backend.load(adapter)
        texts[name] = (base.generate(messages, params).text, tuned.generate(messages, params).text)
        base.close()
        tuned.close()
    assert texts["hf"][0] != texts["hf"][1], "the test adapter must change the answer"
    # A 4-bit base (llama.cpp) and its float copy (HF) agree on the first words, adapter or not.
    for base_or_tuned in (0, 1):
        hf_words = texts["hf"][base_or_tuned].split()[:4]
        assert texts["llamacpp"][base_or_tuned].split()[:4] == hf_words, texts
