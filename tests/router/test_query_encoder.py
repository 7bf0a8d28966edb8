"""The routing-time question encoder: same vectors as the embedder in float32, close ones in int8."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.indexing.embedding import embed
from bot.query_encoder import QueryEncoder
from bot.router import build_router
from tests.router.test_routing import CLEAR
from training.router_training import train_router

QUESTIONS = [q for questions in CLEAR.values() for q in questions]


def test_float32_matches_the_embedder_and_int8_stays_close(embedder: Any) -> None:
    reference = embed(embedder, QUESTIONS)
    exact = np.vstack([QueryEncoder(embedder, "float32").encode([q]) for q in QUESTIONS])
    fast = np.vstack([QueryEncoder(embedder, "int8").encode([q]) for q in QUESTIONS])
    assert np.allclose((exact * reference).sum(axis=1), 1.0, atol=1e-4)
    cosine = (fast * reference).sum(axis=1)
    assert cosine.min() > 0.93 and cosine.mean() > 0.97, cosine
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-4)


def test_a_batch_with_padding_gives_the_same_vectors_as_one_at_a_time(embedder: Any) -> None:
    encoder = QueryEncoder(embedder, "float32")
    batch = encoder.encode(QUESTIONS)
    single = np.vstack([encoder.encode([q]) for q in QUESTIONS])
    assert np.allclose(batch, single, atol=1e-5)


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_both_precisions_route_every_clear_question_right(
    precision: str, router_settings: Settings, embedder: Any, store: ConversationStore, fake_kb: Any
) -> None:
    settings = router_settings.model_copy(
        update={"router": router_settings.router.model_copy(update={"query_precision": precision})}
    )
    train_router(settings, embedder=embedder, store=store, knowledge=fake_kb)
    router = build_router(settings, embedder=embedder, knowledge=fake_kb, store=store)
    assert router.query_encoder.precision == precision
    for route, questions in CLEAR.items():
        for question in questions:
            assert router.decide(question).route == route, (precision, question)
