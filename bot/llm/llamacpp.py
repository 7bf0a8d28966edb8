"""The fast local backend: llama.cpp (llama-cpp-python) on the base GGUF plus a GGUF LoRA adapter.

On this project's 2-core reference machine llama.cpp decodes the bundled model several times
faster than transformers (see docs/benchmarks/domain.md), and a model with its adapter loads
in a fraction of a second, so an adapter swap is simply a new `Llama` built beside the old one.
An adapter version that carries no `adapter.gguf` is converted from its PEFT files once into
the model cache. llama.cpp has no n-gram blocking of its own, so the decode loop here adds it.
"""

from __future__ import annotations

import codecs
import ctypes
import hashlib
import logging
import os
import time
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
from bot.llm.lora_gguf import ADAPTER_GGUF, peft_adapter_to_gguf, validate_adapter_gguf
from bot.model_assets import base_gguf_path

log = logging.getLogger(__name__)


def llamacpp_threads(settings: Settings) -> int:
    """Decode threads for llama.cpp: its own setting, else torch's, else every core."""
    return settings.domain.llamacpp.threads or settings.models.torch_threads or max(1, os.cpu_count() or 2)


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
        return llamacpp_threads(self.settings)

    def adapter_gguf(self, adapter: AdapterRef) -> Path:
        """The adapter's GGUF: shipped in its version folder, or converted once into the cache."""
        shipped = adapter.path / ADAPTER_GGUF
        if shipped.is_file():
            validate_adapter_gguf(shipped, self.gguf_path())
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
        validate_adapter_gguf(target, self.gguf_path())
        return target

    def load(self, adapter: AdapterRef | None) -> LlamaCppModel:
        from llama_cpp import Llama

        started = time.perf_counter()
        lora = str(self.adapter_gguf(adapter)) if adapter else None
        llama = Llama(
            model_path=str(self.gguf_path()),
            lora_path=lora,
            n_ctx=self.settings.domain.llamacpp.n_ctx,
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


class NgramBlocker:
    """Incremental no-repeat-n-gram ban: the tokens that would complete an n-gram already seen.

    Same rule as HF's `no_repeat_ngram_size` (over prompt and answer), kept as a table
    from (n-1)-token prefix to the tokens that followed it, so each decode step costs O(1).
    """

    def __init__(self, n: int, tokens: list[int]) -> None:
        self.n = n
        self.tokens: list[int] = []
        self.follows: dict[tuple[int, ...], set[int]] = {}
        for token in tokens:
            self.push(token)

    def push(self, token: int) -> None:
        self.tokens.append(token)
        if self.n > 0 and len(self.tokens) >= self.n:
            prefix = tuple(self.tokens[-self.n : -1])
            self.follows.setdefault(prefix, set()).add(token)

    def banned(self) -> set[int]:
        if self.n <= 0 or len(self.tokens) < self.n - 1:
            return set()
        prefix = tuple(self.tokens[len(self.tokens) - self.n + 1 :]) if self.n > 1 else ()
        return self.follows.get(prefix, set())


class LlamaCppModel:
    """Decodes with llama.cpp's C API directly rather than llama-cpp-python's completion layer.

    The completion layer routes every step through its sampler chain and, with a Python logits
    processor, copies the vocabulary's logits into and out of numpy twice per token; on a
    135M-parameter model that overhead was a quarter of the decode time. Here a step is one
    `llama_decode` plus numpy work on a view of the logits. The KV cache keeps the last
    conversation, so the shared system-prompt prefix is not evaluated again.
    """

    serial = True

    def __init__(self, llama: Any, version: str) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llama = llama
        self.version = version
        self._lib = llama_cpp
        self._vocab = llama._model.vocab
        self._n_vocab = int(llama.n_vocab())
        self._n_ctx = int(llama.n_ctx())
        self._n_batch = int(llama.n_batch)
        self._pieces: dict[int, bytes] = {}
        self._cached: list[int] = []  # tokens whose keys/values sit in the KV cache
        eos = llama.token_eos()
        bos = llama.token_bos()
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise AnswererUnavailable("the GGUF model has no chat template (tokenizer.chat_template)")
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llama._model.token_get_text(bos) if bos != -1 else "",
        )

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        formatted = self._formatter(messages=messages)  # type: ignore[arg-type]
        return list(
            self.llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True)
        )

    def _evaluate(self, tokens: list[int]) -> None:
        """Bring the KV cache to `tokens`, reusing the longest prefix already there."""
        keep = 0
        for cached, new in zip(self._cached, tokens, strict=False):
            if cached != new:
                break
            keep += 1
        keep = min(keep, len(tokens) - 1)  # the last token is always decoded: its logits are needed
        self.llama._ctx.kv_cache_seq_rm(0, keep, -1)
        self._cached = self._cached[:keep]
        for start in range(keep, len(tokens), self._n_batch):
            chunk = tokens[start : start + self._n_batch]
            self._decode(chunk, start)

    def _decode(self, chunk: list[int], n_past: int) -> None:
        batch = self.llama._batch
        batch.set_batch(chunk, n_past=n_past, logits_all=False)
        self.llama._ctx.decode(batch)
        self._cached.extend(chunk)

    def _piece(self, token: int) -> bytes:
        """The token's bytes (llama-cpp-python's own helper returns its whole padded buffer)."""
        cached = self._pieces.get(token)
        if cached is None:
            size = 32
            while True:
                buf = ctypes.create_string_buffer(size)
                n = self._lib.llama_token_to_piece(self._vocab, token, buf, size, 0, False)
                if n >= 0:
                    cached = buf.raw[:n]
                    break
                size = -n
            self._pieces[token] = cached
        return cached

    def _logits(self) -> np.ndarray:
        pointer = self.llama._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))

    def _choose(
        self,
        logits: np.ndarray,
        params: GenerationParams,
        seen: np.ndarray | None,
        banned: set[int],
        rng: np.random.Generator,
    ) -> int:
        if seen is None and not banned and params.temperature <= 0:
            return int(logits.argmax())
        scores = logits.astype(np.float32, copy=True)
        if seen is not None:  # HF's rule: shrink positive logits, push negative ones further down
            picked = scores[seen]
            penalty = params.repetition_penalty
            scores[seen] = np.where(picked > 0, picked / penalty, picked * penalty)
        if banned:
            scores[np.fromiter(banned, dtype=np.int64)] = -np.inf
        if params.temperature <= 0:
            return int(scores.argmax())
        scores = scores / params.temperature
        scores -= scores.max()
        probs = np.exp(scores)
        order = np.argsort(-probs)
        cumulative = np.cumsum(probs[order]) / probs.sum()
        keep = order[: int(np.searchsorted(cumulative, 0.95)) + 1]
        weights = probs[keep] / probs[keep].sum()
        return int(rng.choice(keep, p=weights))

    def generate(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        on_text: TextCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> GenerationResult:
        started = time.perf_counter()
        prompt = self.prompt_tokens(messages)
        room = self._n_ctx - len(prompt)
        if room <= 0:
            raise AnswererUnavailable(
                f"the question is too long for the domain model ({len(prompt)} prompt tokens, "
                f"context {self._n_ctx}; raise domain.llamacpp.n_ctx)"
            )
        limit = min(params.max_new_tokens, room)
        penalize = params.repetition_penalty != 1.0
        seen_ids = set(prompt) if penalize else set()
        blocker = NgramBlocker(params.no_repeat_ngram_size, prompt)
        rng = np.random.default_rng()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = [s for s in params.stop if s]
        text = ""
        new_tokens = 0
        first_token_s = 0.0
        finish = "length"
        try:
            self._evaluate(prompt)
            while new_tokens < limit:
                seen = np.fromiter(seen_ids, dtype=np.int64, count=len(seen_ids)) if penalize else None
                token = self._choose(self._logits(), params, seen, blocker.banned(), rng)
                if self._lib.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                new_tokens += 1
                if not first_token_s:
                    first_token_s = time.perf_counter() - started
                piece = decoder.decode(self._piece(token))
                if piece:
                    text += piece
                    cut = _first_stop(text, stops, len(piece))
                    if cut is not None:
                        text = text[:cut]
                        finish = "stop"
                        break
                    if on_text is not None:
                        on_text(text)
                    reason = should_stop(text) if should_stop is not None else None
                    if reason:
                        finish = reason
                        break
                if new_tokens >= limit:
                    break
                if penalize:
                    seen_ids.add(token)
                blocker.push(token)
                self._decode([token], len(self._cached))
        except RuntimeError as exc:  # llama_decode failed: the KV cache is in an unknown state
            self._cached = []
            self.llama._ctx.kv_cache_clear()
            raise AnswererUnavailable(f"llama.cpp could not decode ({exc})") from exc
        return GenerationResult(
            text=text,
            new_tokens=new_tokens,
            finish_reason=finish,
            seconds=time.perf_counter() - started,
            first_token_s=first_token_s,
        )

    def close(self) -> None:
        llama, self.llama = self.llama, None
        if llama is not None:
            llama.close()


def _first_stop(text: str, stops: list[str], appended: int) -> int | None:
    """Where the earliest stop string starts, looking only where the new piece could complete one."""
    best: int | None = None
    for stop in stops:
        index = text.find(stop, max(0, len(text) - appended - len(stop)))
        if index != -1 and (best is None or index < best):
            best = index
    return best
