"""The seam between the domain answerer and whatever runs the model.

A backend turns (base model + optional adapter version) into a `LoadedModel`. The answerer
keeps one loaded model serving and builds the next one beside it when a new adapter is
promoted, then swaps the reference: loading never blocks or fails a request in flight.
Which backend runs is a config choice (`domain.backend`), resolved by `select_backend`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

BASE_VERSION = "base"
TextCallback = Callable[[str], None]
# Called with the text so far; returns a reason to stop decoding now, or None to go on.
StopCheck = Callable[[str], "str | None"]


@dataclass(frozen=True)
class AdapterRef:
    """A promoted adapter version: a PEFT folder (adapter_config.json + weights), maybe adapter.gguf."""

    version: str
    path: Path


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int
    temperature: float = 0.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationResult:
    text: str
    new_tokens: int
    finish_reason: str  # "stop" (end of turn), "length", or an early-stop reason
    seconds: float = 0.0
    first_token_s: float = 0.0


class LoadedModel(Protocol):
    """One base model with one adapter applied, ready to generate."""

    version: str
    # True when generate() must not run concurrently (one in-process model, one set of caches).
    serial: bool

    def generate(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        on_text: TextCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> GenerationResult: ...

    def close(self) -> None: ...


class LLMBackend(Protocol):
    name: str

    def load(self, adapter: AdapterRef | None) -> LoadedModel:
        """Build a model with this adapter (None = the base alone); raise to keep the old one."""
        ...

    def close(self) -> None: ...


def llama_cpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None
