"""The seam between the domain answerer and whatever runs the model.

A backend turns (base model + optional adapter version) into a `LoadedModel`. The answerer
keeps one loaded model serving and builds the next one beside it when a new adapter is
promoted, then swaps the reference: loading never blocks or fails a request in flight.
Which backend runs is a config choice (`domain.backend`), resolved by `select_backend`.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.config import Settings
from bot.errors import ConfigError

log = logging.getLogger(__name__)

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


def _build_hf(settings: Settings) -> LLMBackend:
    from bot.llm.hf import HFBackend

    return HFBackend(settings)


def _build_llamacpp(settings: Settings) -> LLMBackend:
    from bot.llm.llamacpp import LlamaCppBackend

    return LlamaCppBackend(settings)


def _build_openai(settings: Settings) -> LLMBackend:
    from bot.llm.openai_server import OpenAIServerBackend

    return OpenAIServerBackend(settings)


BACKENDS: dict[str, Callable[[Settings], LLMBackend]] = {
    "hf": _build_hf,
    "llamacpp": _build_llamacpp,
    "openai": _build_openai,
}


def resolve_backend_name(settings: Settings) -> tuple[str, str]:
    """Which backend serves, and why (logged at start so ops can tell what is running)."""
    cfg = settings.domain
    if cfg.backend == "openai":
        if not cfg.server_url:
            raise ConfigError(
                "domain.server_url: required when domain.backend = \"openai\" "
                "(e.g. http://vllm:8000/v1)"
            )
        return "openai", f"configured: OpenAI-compatible server at {cfg.server_url}"
    if cfg.backend == "hf":
        return "hf", "configured: domain.backend = \"hf\""
    if cfg.backend == "llamacpp":
        if settings.models.base_llm_path is not None and settings.models.base_llm_gguf is None:
            raise ConfigError(
                "domain.backend: llama.cpp reads GGUF files only, but models.base_llm_path is a "
                "Hugging Face folder; set models.base_llm_gguf, or use backend = \"hf\""
            )
        if not llama_cpp_available():
            raise ConfigError(
                "domain.backend: \"llamacpp\" needs llama-cpp-python (run scripts/setup_llamacpp.sh "
                ".venv), or set backend = \"auto\" to use the Hugging Face backend"
            )
        return "llamacpp", "configured: domain.backend = \"llamacpp\""
    # auto
    if settings.models.base_llm_path is not None and settings.models.base_llm_gguf is None:
        return "hf", "auto: models.base_llm_path is a Hugging Face folder, which llama.cpp cannot read"
    if not llama_cpp_available():
        return "hf", "auto: llama-cpp-python is not installed (scripts/setup_llamacpp.sh adds it)"
    return "llamacpp", "auto: llama-cpp-python is installed and the base model is a GGUF file"


def select_backend(settings: Settings) -> LLMBackend:
    name, reason = resolve_backend_name(settings)
    log.info("domain model backend=%s reason=%s", name, reason)
    return BACKENDS[name](settings)
