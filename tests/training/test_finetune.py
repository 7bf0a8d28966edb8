"""LoRA fine-tuning on the tiny model: learns, touches only the adapter, resumes after a kill."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from bot.config import Settings
from training.dataset import Example
from training.finetune import IGNORE_INDEX, TrainingError, finetune, tokenize_chat

REPEATED = Example(
    "How often should I water a Masdevallia orchid?",
    "Keep it evenly moist and water every two to four days with rainwater.",
    "seed",
)


def dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def test_loss_is_computed_on_the_assistant_reply_only(tiny_llm_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_llm_dir))
    messages = REPEATED.messages("You are the plant expert.")
    tokenized = tokenize_chat(tok, messages, max_length=256)
    assert tokenized is not None
    learned = [t for t in tokenized.labels if t != IGNORE_INDEX]
    assert tok.decode(learned) == REPEATED.answer + "<|im_end|>\n"
    prompt = tok.decode([t for t, lab in zip(tokenized.input_ids, tokenized.labels, strict=True)
                         if lab == IGNORE_INDEX])
    assert prompt.endswith("<|im_start|>assistant\n") and "plant expert" in prompt
    # A prompt that cannot fit is skipped rather than trained as an answer to a cut question.
    assert tokenize_chat(tok, messages, max_length=20) is None


def test_a_few_steps_lower_the_loss_and_change_only_the_adapter(
    tiny_settings: Callable[..., Settings], tiny_llm_dir: Path
) -> None:
    settings = tiny_settings(training__max_steps=6, training__epochs=100, training__lora_dropout=0.0,
                             training__batch_size=2)
    base_before = dir_digest(tiny_llm_dir)
    result = finetune(settings, [REPEATED] * 2, base_dir=tiny_llm_dir, data_hash="rep", progress=False)
    assert result.steps == 6
    first, last = result.losses[0][1], result.losses[-1][1]
    # The random model's tiny tied embeddings cap how far its loss can fall (~1.3 nats).
    assert last < first - 0.25, result.losses
    weights = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
    lora_b = [w for name, w in weights.items() if "lora_B" in name]
    assert lora_b and all(float(w.abs().sum()) > 0 for w in lora_b)  # B starts at zero
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert dir_digest(tiny_llm_dir) == base_before
    assert result.tokens > 0 and result.tokens_per_s > 0 and result.device == "cpu"


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_an_unbroken_run_does(
    tiny_settings: Callable[..., Settings], tiny_llm_dir: Path, tmp_path: Path
) -> None:
    data = [REPEATED, Example("What light does a Phalaenopsis need?", "Bright indirect light.", "seed"),
            Example("Do Lithops need much water?", "Very little; soak only when dry.", "seed")] * 2
    common = {"training__max_steps": 4, "training__epochs": 10, "training__batch_size": 2,
              "training__checkpoint_every": 2, "training__lora_dropout": 0.1}
    interrupted = tiny_settings(**common)

    def kill_after_step_3(step: int, _loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(interrupted, data, base_dir=tiny_llm_dir, data_hash="d", progress=False, on_step=kill_after_step_3)
    resumed = finetune(interrupted, data, base_dir=tiny_llm_dir, data_hash="d", progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == 4

    unbroken = tiny_settings(app__state_dir=str(tmp_path / "other-var"), **common)
    reference = finetune(unbroken, data, base_dir=tiny_llm_dir, data_hash="d", progress=False)
    assert [round(v, 5) for _, v in resumed.losses] == [round(v, 5) for _, v in reference.losses]
    got = load_file(str(resumed.adapter_dir / "adapter_model.safetensors"))
    want = load_file(str(reference.adapter_dir / "adapter_model.safetensors"))
    assert got.keys() == want.keys()
    for name in got:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)

    # Finished work is reused: a rerun with the same data and settings trains nothing.
    again = finetune(interrupted, data, base_dir=tiny_llm_dir, data_hash="d", progress=False,
                     on_step=lambda *_: pytest.fail("trained again"))
    assert again.adapter_dir == resumed.adapter_dir


def test_a_target_module_missing_from_the_model_is_named(
    tiny_settings: Callable[..., Settings], tiny_llm_dir: Path
) -> None:
    settings = tiny_settings(training__target_modules=["q_proj", "query_key_value"])
    with pytest.raises(TrainingError, match="query_key_value"):
        finetune(settings, [REPEATED], base_dir=tiny_llm_dir, data_hash="x", progress=False)


def test_the_learning_rate_stays_at_its_peak_after_warmup_unless_linear_decay_is_chosen() -> None:
    """A short run (a few dozen steps) learns more at a constant rate; linear decay is opt-in."""
    from training.finetune import _lr_lambda

    constant, linear = _lr_lambda(60, 0.05), _lr_lambda(60, 0.05, "linear")
    assert [round(constant(s), 2) for s in (0, 2, 3, 30, 59)] == [0.33, 1.0, 1.0, 1.0, 1.0]
    assert linear(3) == 1.0 and 0.45 < linear(30) < 0.55 and linear(59) < 0.03
