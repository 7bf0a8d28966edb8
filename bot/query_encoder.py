"""Embedding one customer question fast enough that routing stays out of the answer's way.

sentence-transformers is built for batches: for a single short question its batching, sorting
and module plumbing cost about a fifth of the time, and the float32 linear layers of MiniLM the
rest (about 18 ms p50 on the 2-core reference machine, one thread). This encoder runs the same
tokenizer and transformer with mean pooling and normalisation directly, optionally with int8
per-channel weights (dynamic quantization), which halves the time; docs/router.md gives the
routing quality with each precision. Stored example embeddings stay float32: only the question
side changes, so switching the setting needs no retraining.
"""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

Precision = Literal["float32", "int8"]


def _mean_pooled(embedder: Any) -> tuple[Any, Any, int, bool] | None:
    """(tokenizer, transformer, max length, normalise) when the model is plain mean pooling."""
    try:
        modules = list(embedder)
    except TypeError:  # not a sentence-transformers model (e.g. a test double)
        return None
    if len(modules) not in (2, 3):
        return None
    transformer, pooling = modules[0], modules[1]
    model = getattr(transformer, "auto_model", None)
    mean = getattr(pooling, "pooling_mode", None) == "mean" or bool(
        getattr(pooling, "pooling_mode_mean_tokens", False)
    )
    if model is None or not mean:
        return None
    normalise = len(modules) == 3 and type(modules[2]).__name__ == "Normalize"
    max_length = int(getattr(embedder, "max_seq_length", None) or 256)
    return embedder.tokenizer, model, max_length, normalise


class QueryEncoder:
    """`encode(texts)` → unit-length float32 rows, like `bot.router.embed` on the embedder."""

    def __init__(self, embedder: Any, precision: Precision = "int8") -> None:
        self.embedder = embedder
        self.precision = precision
        parts = _mean_pooled(embedder)
        self._direct = parts is not None
        if parts is None:
            log.info("query encoder: the embedder is not plain mean pooling; using sentence-transformers")
            self._model: Any = None
            return
        self._tokenizer, model, self._max_length, self._normalise = parts
        if precision == "int8":
            import torch

            with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao, still works
                warnings.simplefilter("ignore")
                from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

                model = quantize_dynamic(
                    copy.deepcopy(model).eval(), {torch.nn.Linear: per_channel_dynamic_qconfig}
                )
        self._model = model.eval()

    def encode(self, texts: list[str]) -> np.ndarray:
        if not self._direct:
            from bot.indexing.embedding import embed

            return embed(self.embedder, texts)
        import torch

        with torch.inference_mode():
            batch = self._tokenizer(
                texts, return_tensors="pt", padding=True, truncation=True, max_length=self._max_length
            )
            hidden = self._model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 **({"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch else {}))
            states = hidden.last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if self._normalise:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.float().numpy().astype(np.float32, copy=False)
