"""The portable local backend: transformers + peft on CPU, for any Hugging Face causal LM.

llama.cpp is faster on GGUF models, but this backend runs every model transformers can read
and needs nothing compiled. Speed comes from choices measured in bench/domain.py: the LoRA
adapter merged into the base weights (no extra matmuls per layer), int8 dynamic quantization
of the linear layers, and a static KV cache. Each adapter version gets a fresh copy of the base
(about 0.5 s from the converted cache), so the model serving requests is never modified in place.
Imported only when this backend is chosen, so torch and transformers load at module level here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from bot.config import Settings
from bot.errors import AnswererUnavailable
from bot.llm.backend import (
    BASE_VERSION,
    AdapterRef,
    GenerationParams,
    GenerationResult,
    StopCheck,
    TextCallback,
)
from bot.model_assets import base_llm_dir, load_causal_lm

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# End-of-turn markers of common chat templates; generation stops at any that the vocab has.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>")


class HFBackend:
    name = "hf"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._base_dir: Path | None = None

    def base_dir(self) -> Path:
        if self._base_dir is None:
            self._base_dir = base_llm_dir(self.settings)
        return self._base_dir

    def load(self, adapter: AdapterRef | None) -> HFModel:
        cfg = self.settings.domain
        started = time.perf_counter()
        quantize = cfg.hf.quantization == "int8_dynamic"
        # int8 dynamic quantization converts from float32 weights; bf16 would be upcast anyway.
        dtype = "float32" if quantize else cfg.hf.dtype
        model, tokenizer = load_causal_lm(self.base_dir(), dtype=dtype)
        if adapter is not None:
            from peft import PeftModel

            peft_model = PeftModel.from_pretrained(model, str(adapter.path), is_trainable=False)
            model = peft_model.merge_and_unload() if (cfg.hf.merge_adapter or quantize) else peft_model
        if quantize:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        model.eval()
        version = adapter.version if adapter else BASE_VERSION
        log.info(
            "hf model ready version=%s dtype=%s quantization=%s merged=%s in %.2fs",
            version,
            dtype,
            cfg.hf.quantization,
            bool(adapter) and (cfg.hf.merge_adapter or quantize),
            time.perf_counter() - started,
        )
        return HFModel(model, tokenizer, version, static_cache=cfg.hf.static_cache)

    def close(self) -> None:
        return None


class HFModel:
    serial = True

    def __init__(
        self,
        model: Any,  # a PreTrainedModel, or a PeftModel around one
        tokenizer: PreTrainedTokenizerBase,
        version: str,
        *,
        static_cache: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.version = version
        self.static_cache = static_cache
        self.eos_ids = _end_of_turn_ids(model, tokenizer)
        self.context_tokens = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)

    def encode_chat(self, messages: list[dict[str, str]]) -> Any:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:  # a plain LM without a template still gets a readable dialogue
            prompt = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
        return tok(prompt, return_tensors="pt", add_special_tokens=False)

    def generate(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        on_text: TextCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> GenerationResult:
        started = time.perf_counter()
        enc = self.encode_chat(messages)
        prompt_len = int(enc["input_ids"].shape[1])
        max_new = min(params.max_new_tokens, self.context_tokens - prompt_len)
        if max_new < 1:
            raise AnswererUnavailable(
                f"the question is too long for the domain model ({prompt_len} tokens, "
                f"context {self.context_tokens})"
            )
        streamer = _CallbackStreamer(self.tokenizer, on_text, should_stop, started)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "do_sample": params.temperature > 0,
            "repetition_penalty": params.repetition_penalty,
            "no_repeat_ngram_size": params.no_repeat_ngram_size,
            "eos_token_id": self.eos_ids,
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.eos_ids[0],
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_StopWhenStreamerSaysSo(streamer)]),
        }
        if params.temperature > 0:
            kwargs["temperature"] = params.temperature
            kwargs["top_p"] = 0.95
        else:  # the model's generation_config may carry sampling defaults; greedy ignores them
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if self.static_cache:
            kwargs["cache_implementation"] = "static"
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new_ids = out[0, prompt_len:]
        new_tokens = int(new_ids.shape[0])
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        if streamer.stop_reason:
            finish = streamer.stop_reason
        elif new_tokens and int(new_ids[-1]) in self.eos_ids:
            finish = "stop"
        else:
            finish = "length"
        return GenerationResult(
            text=str(text),
            new_tokens=new_tokens,
            finish_reason=finish,
            seconds=time.perf_counter() - started,
            first_token_s=streamer.first_token_s,
        )

    def close(self) -> None:
        self.model = None


def _end_of_turn_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (configured, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, list):
            ids.extend(v for v in value if isinstance(v, int))
    vocab = tokenizer.get_vocab()
    ids.extend(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return list(dict.fromkeys(ids)) or [0]


class _CallbackStreamer(BaseStreamer):
    """Receives tokens from `generate`, reports the growing text and decides on early stops.

    The first `put` is the prompt; later ones are single new tokens. Decoding the whole answer
    each time (a few hundred tokens at most) keeps multi-byte characters intact.
    """

    def __init__(
        self,
        tokenizer: Any,
        on_text: TextCallback | None,
        should_stop: StopCheck | None,
        started: float,
    ) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.should_stop = should_stop
        self.started = started
        self.ids: list[int] = []
        self.saw_prompt = False
        self.stop_reason = ""
        self.first_token_s = 0.0

    def put(self, value: Any) -> None:
        if not self.saw_prompt:
            self.saw_prompt = True
            return
        if not self.ids:
            self.first_token_s = time.perf_counter() - self.started
        self.ids.extend(int(v) for v in value.reshape(-1).tolist())
        if self.on_text is None and self.should_stop is None:
            return
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if self.on_text is not None:
            self.on_text(text)
        if self.should_stop is not None and not self.stop_reason:
            self.stop_reason = self.should_stop(text) or ""

    def end(self) -> None:
        return None


class _StopWhenStreamerSaysSo(StoppingCriteria):
    """A stopping criterion reading the streamer's verdict, so checks run once per token."""

    def __init__(self, streamer: _CallbackStreamer) -> None:
        self.streamer = streamer

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), bool(self.streamer.stop_reason), dtype=torch.bool)
