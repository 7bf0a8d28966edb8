"""The llama.cpp backend on the bundled GGUF, with adapters converted from PEFT files."""

from __future__ import annotations

import pytest

from bot.answerers.domain_model import build_domain_answerer
from bot.interfaces import AskContext
from bot.llm.backend import llama_cpp_available
from bot.llm.llamacpp import NgramBlocker
from bot.llm.selection import resolve_backend_name
from bot.testing.tiny_models import make_bundled_shaped_adapter

QUESTION = "How often should I water a Masdevallia orchid?"
needs_llama_cpp = pytest.mark.skipif(
    not llama_cpp_available(),
    reason="llama-cpp-python is not installed (scripts/setup_llamacpp.sh .venv adds it)",
)


def test_ngram_blocker_bans_the_token_that_would_repeat_a_trigram():
    blocker = NgramBlocker(3, [5, 6, 7, 1, 5])
    blocker.push(6)
    assert blocker.banned() == {7}  # 5 6 → 7 was already said
    blocker.push(8)
    assert blocker.banned() == set()  # 6 8 was never followed by anything
    assert NgramBlocker(0, [1, 1, 1]).banned() == set()


def test_auto_backend_says_why_it_chose(settings_factory, tiny_llm_dir):
    hf_folder = settings_factory(**{"models.base_llm_path": str(tiny_llm_dir)})
    assert resolve_backend_name(hf_folder) == (
        "hf",
        "auto: models.base_llm_path is a Hugging Face folder, which llama.cpp cannot read",
    )
    name, reason = resolve_backend_name(settings_factory())
    assert name == ("llamacpp" if llama_cpp_available() else "hf")
    assert reason.startswith("auto: llama-cpp-python is")


@needs_llama_cpp
@pytest.mark.real_models
def test_llamacpp_answers_within_limits_and_streams(settings_factory):
    settings = settings_factory(**{"domain.backend": "llamacpp", "domain.max_new_tokens": 24,
                                   "domain.model_answers": "always"})
    answerer = build_domain_answerer(settings)
    partials: list[str] = []
    try:
        draft = answerer.answer(QUESTION, AskContext(), on_partial=partials.append)
    finally:
        answerer.close()
    assert draft.model_version == "base"
    assert len(draft.text.split()) <= 24
    assert "<|im_end|>" not in draft.text and draft.text
    assert len(partials) >= 3


@needs_llama_cpp
@pytest.mark.real_models
def test_llamacpp_serves_a_promoted_peft_adapter_and_swaps_live(settings_factory, promote, tmp_path):
    settings = settings_factory(**{"domain.backend": "llamacpp", "domain.max_new_tokens": 16,
                                   "domain.model_answers": "always"})
    answerer = build_domain_answerer(settings)
    try:
        base = answerer.answer(QUESTION, AskContext())
        version = promote(settings, make_bundled_shaped_adapter(tmp_path / "adapter", seed=3, scale=0.08))
        assert answerer.refresh_adapter(wait=True)
        tuned = answerer.answer(QUESTION, AskContext())
    finally:
        answerer.close()
    assert (base.model_version, tuned.model_version) == ("base", version)
    assert tuned.text != base.text
    assert list((settings.state_dir / "models" / "lora-gguf").glob(f"{version}-*.gguf"))
