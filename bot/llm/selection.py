"""Which domain-model backend serves: the configured one, or under "auto" the best one installed.

Kept apart from `bot.llm.backend` (the protocols every backend implements), so that the backends
import the protocols and only this module imports the backends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.config import Settings
from bot.errors import ConfigError
from bot.llm.backend import LLMBackend, llama_cpp_available

log = logging.getLogger(__name__)


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
        if not cfg.server.url:
            raise ConfigError(
                "domain.server.url: required when domain.backend = \"openai\" "
                "(e.g. http://vllm:8000/v1)"
            )
        return "openai", f"configured: OpenAI-compatible server at {cfg.server.url}"
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
