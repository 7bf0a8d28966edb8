"""Write an adapter's GGUF copy and prove llama.cpp applies it the way peft does.

llama.cpp serves the bundled model, so what customers read comes from the GGUF copy of an
adapter, while training and evaluation measured the PEFT original. A conversion slip (a tensor
name, the q/k row permutation, alpha) would leave a fluent but different model serving, and no
metric of the training run would show it. So every copy is checked when it is written: on a
few fixed questions, HF + peft answers greedily, then llama.cpp + the copy reads that same token
sequence and must pick the same next token at (almost) every position. Teacher forcing keeps
one early difference from cascading, so the share measures the conversion, not the drift that a
4-bit base against its float copy shows over a long answer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from bot.config import Settings
from bot.llm.backend import llama_cpp_available
from bot.llm.lora_gguf import ADAPTER_GGUF, peft_adapter_to_gguf, validate_adapter_gguf

log = logging.getLogger(__name__)

CheckStatus = Literal["passed", "failed", "unchecked", "not_applicable"]


@dataclass(frozen=True)
class GGUFCheck:
    status: CheckStatus
    reason: str
    agreement: float | None = None
    threshold: float | None = None
    positions: int = 0
    # Agreement at the positions where the adapter changed the base model's choice: informative
    # (the 4-bit base's own near-ties concentrate there), not gated.
    adapter_decided_agreement: float | None = None
    adapter_decided_positions: int = 0
    seconds: float = 0.0

    @property
    def blocks_promotion(self) -> bool:
        return self.status == "failed"

    def as_metadata(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class _Probe:
    prompt_ids: list[int]
    answer_ids: list[int]
    # Per answer position: did the base model alone pick a different token (the adapter decided)?
    adapter_decided: list[bool]


def _hf_probes(settings: Settings, base_dir: Path, adapter_dir: Path) -> list[_Probe]:
    """HF + peft's greedy answer to each check question, as token ids."""
    import torch
    from peft import PeftModel

    from bot.model_assets import load_causal_lm

    cfg = settings.training
    model, tokenizer = load_causal_lm(base_dir, dtype="float32")
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    probes: list[_Probe] = []
    with torch.inference_mode():
        for question in cfg.gguf_check_prompts:
            messages = [
                {"role": "system", "content": settings.domain.system_prompt},
                {"role": "user", "content": question},
            ]
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
            ids = list(cast(dict[str, Any], prompt)["input_ids"])
            output = model.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=cfg.gguf_check_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            )
            answer = output[0, len(ids):]
            with model.disable_adapter():
                base_logits = model(input_ids=output[:, :-1]).logits[0, len(ids) - 1 :]
            decided = (base_logits.argmax(dim=-1) != answer).tolist()
            probes.append(_Probe(ids, answer.tolist(), decided))
    return probes


@dataclass
class _Counts:
    agree: int = 0
    total: int = 0
    decided_agree: int = 0
    decided_total: int = 0


def _llamacpp_agreement(settings: Settings, base_gguf: Path, adapter_gguf: Path, probes: list[_Probe]) -> _Counts:
    from llama_cpp import Llama

    from bot.llm.llamacpp import llamacpp_threads

    longest = max(len(p.prompt_ids) + len(p.answer_ids) for p in probes)
    llama = Llama(
        model_path=str(base_gguf),
        lora_path=str(adapter_gguf),
        n_ctx=max(512, longest + 8),
        n_batch=max(512, longest + 8),
        n_threads=llamacpp_threads(settings),  # as served
        logits_all=True,
        verbose=False,
    )
    counts = _Counts()
    try:
        for probe in probes:
            if not probe.answer_ids:
                continue
            sequence = probe.prompt_ids + probe.answer_ids
            llama.reset()
            llama.eval(sequence[:-1])
            start = len(probe.prompt_ids) - 1
            chosen = np.asarray(llama.scores[start : len(sequence) - 1]).argmax(axis=1)
            same = chosen == np.asarray(probe.answer_ids)
            decided = np.asarray(probe.adapter_decided, dtype=bool)
            counts.agree += int(same.sum())
            counts.total += len(same)
            counts.decided_agree += int(same[decided].sum())
            counts.decided_total += int(decided.sum())
    finally:
        llama.close()
    return counts


def write_and_check_gguf(settings: Settings, adapter_dir: Path, base_dir: Path) -> GGUFCheck:
    """Write `adapter_dir/adapter.gguf` and check it; the result goes into the version's metadata."""
    started = time.perf_counter()
    if settings.models.base_llm_path is not None and settings.models.base_llm_gguf is None:
        return GGUFCheck(
            "not_applicable",
            "the base model is a Hugging Face folder (models.base_llm_path), which llama.cpp cannot serve",
        )
    from bot.llm.lora_gguf import AdapterConversionError
    from bot.model_assets import base_gguf_path

    threshold = settings.training.gguf_agreement_threshold
    base_gguf = base_gguf_path(settings)
    target = adapter_dir / ADAPTER_GGUF
    try:
        peft_adapter_to_gguf(adapter_dir, base_gguf, target)
        validate_adapter_gguf(target, base_gguf)
    except AdapterConversionError as exc:
        return GGUFCheck("failed", f"no GGUF copy: {exc}", threshold=threshold)
    if not llama_cpp_available():
        return GGUFCheck(
            "unchecked",
            "GGUF copy written; llama-cpp-python is not installed, so it was not checked "
            "(the Hugging Face backend serves the PEFT adapter)",
            threshold=threshold,
        )
    try:
        counts = _llamacpp_agreement(
            settings, base_gguf, target, _hf_probes(settings, base_dir, adapter_dir)
        )
    except Exception as exc:  # llama.cpp refusing the file is exactly what this check is for
        log.warning("llama.cpp could not use the GGUF copy of %s: %s", adapter_dir, exc)
        target.unlink(missing_ok=True)
        return GGUFCheck(
            "failed", f"llama.cpp could not apply the GGUF copy ({exc})", threshold=threshold,
            seconds=round(time.perf_counter() - started, 1),
        )
    agree, total = counts.agree, counts.total
    agreement = agree / total if total else 0.0
    passed = total > 0 and agreement >= threshold
    reason = (
        f"llama.cpp + GGUF copy chose HF + peft's next token at {agree}/{total} positions "
        f"({agreement:.3f}; threshold {threshold:.2f}; {counts.decided_agree}/{counts.decided_total} "
        "where the adapter changed the base model's choice)"
    )
    check = GGUFCheck(
        "passed" if passed else "failed",
        reason,
        agreement=round(agreement, 4),
        threshold=threshold,
        positions=total,
        adapter_decided_agreement=(
            round(counts.decided_agree / counts.decided_total, 4) if counts.decided_total else None
        ),
        adapter_decided_positions=counts.decided_total,
        seconds=round(time.perf_counter() - started, 1),
    )
    (log.info if passed else log.warning)("GGUF check of %s: %s", adapter_dir, reason)
    return check
