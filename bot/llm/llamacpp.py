"""The fast local backend: llama.cpp (llama-cpp-python) on the base GGUF plus a GGUF LoRA adapter.

On this project's 2-core reference machine llama.cpp decodes the bundled model several times
faster than transformers (see docs/benchmarks/domain.md), and a model with its adapter loads
in a fraction of a second, so an adapter swap is simply a new `Llama` built beside the old one.
An adapter version that carries no `adapter.gguf` is converted from its PEFT files once into
the model cache. llama.cpp has no n-gram blocking of its own, so a logits processor adds it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
from bot.llm.lora_gguf import peft_adapter_to_gguf
from bot.models import base_gguf_path

log = logging.getLogger(__name__)

ADAPTER_GGUF = "adapter.gguf"


def no_repeat_ngram_processor(n: int) -> Callable[[Any, Any], Any]:
    """Ban any token that would complete an n-gram already present (HF's no_repeat_ngram_size)."""

    def process(input_ids: Any, scores: Any) -> Any:
        ids = input_ids.tolist()
        if len(ids) < n:
            return scores
        prefix = ids[len(ids) - n + 1 :]
        banned = [ids[i + n - 1] for i in range(len(ids) - n + 1) if ids[i : i + n - 1] == prefix]
        if banned:
            scores[np.asarray(banned)] = -np.inf
        return scores

    return process


class LlamaCppBackend:
    name = "llamacpp"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._gguf: Path | None = None

    def gguf_path(self) -> Path:
        if self._gguf is None:
            self._gguf = base_gguf_path(self.settings)
        return self._gguf

    def threads(self) -> int:
        return (
            self.settings.domain.llamacpp_threads
            or self.settings.models.torch_threads
            or max(1, os.cpu_count() or 2)
        )

    def adapter_gguf(self, adapter: AdapterRef) -> Path:
        """The adapter's GGUF: shipped in its version folder, or converted once into the cache."""
        shipped = adapter.path / ADAPTER_GGUF
        if shipped.is_file():
            return shipped
        weights = adapter.path / "adapter_model.safetensors"
        stamp = hashlib.sha256(
            f"{weights.resolve()}:{weights.stat().st_size if weights.exists() else 0}:"
            f"{self.gguf_path().resolve()}".encode()
        ).hexdigest()[:12]
        cache = (self.settings.models.cache_dir or self.settings.state_dir / "models") / "lora-gguf"
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / f"{adapter.version}-{stamp}.gguf"
        if not target.is_file():
            peft_adapter_to_gguf(adapter.path, self.gguf_path(), target)
        return target

    def load(self, adapter: AdapterRef | None) -> LlamaCppModel:
        from llama_cpp import Llama

        started = time.perf_counter()
        lora = str(self.adapter_gguf(adapter)) if adapter else None
        llama = Llama(
            model_path=str(self.gguf_path()),
            lora_path=lora,
            n_ctx=self.settings.domain.llamacpp_n_ctx,
            n_threads=self.threads(),
            n_threads_batch=self.threads(),
            verbose=False,
        )
        version = adapter.version if adapter else BASE_VERSION
        log.info(
            "llama.cpp model ready version=%s lora=%s threads=%d in %.2fs",
            version,
            lora,
            self.threads(),
            time.perf_counter() - started,
        )
        return LlamaCppModel(llama, version)

    def close(self) -> None:
        return None


class LlamaCppModel:
    serial = True

    def __init__(self, llama: Any, version: str) -> None:
        self.llama = llama
        self.version = version

    def generate(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        on_text: TextCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> GenerationResult:
        from llama_cpp import LogitsProcessorList

        started = time.perf_counter()
        processors = (
            LogitsProcessorList([no_repeat_ngram_processor(params.no_repeat_ngram_size)])
            if params.no_repeat_ngram_size > 0
            else None
        )
        text = ""
        pieces = 0
        first_token_s = 0.0
        finish = "length"
        try:
            stream = self.llama.create_chat_completion(
                messages=messages,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=0.95 if params.temperature > 0 else 1.0,
                repeat_penalty=params.repetition_penalty,
                stop=list(params.stop) or None,
                logits_processor=processors,
                stream=True,
            )
            for chunk in stream:
                choice = chunk["choices"][0]
                piece = choice.get("delta", {}).get("content") or ""
                if piece:
                    if not pieces:
                        first_token_s = time.perf_counter() - started
                    pieces += 1
                    text += piece
                    if on_text is not None:
                        on_text(text)
                    reason = should_stop(text) if should_stop is not None else None
                    if reason:
                        finish = reason
                        stream.close()
                        break
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        except ValueError as exc:  # llama.cpp reports a prompt longer than the context this way
            raise AnswererUnavailable(f"the question is too long for the domain model ({exc})") from exc
        return GenerationResult(
            text=text,
            new_tokens=pieces,
            finish_reason=finish,
            seconds=time.perf_counter() - started,
            first_token_s=first_token_s,
        )

    def close(self) -> None:
        llama, self.llama = self.llama, None
        if llama is not None:
            llama.close()
