"""Router fixtures: settings on the shipped seed file, a memoizing embedder, a fake knowledge base.

The embedder is the real MiniLM; the wrapper only remembers vectors it already computed, so
the many trainings in these tests embed the ~250 seed questions once per session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.routing.seed import load_seed_topics, seed_examples

REPO = Path(__file__).resolve().parents[2]
SEED_FILE = REPO / "data" / "seed_routes.yaml"
SEED_EXAMPLES = seed_examples(load_seed_topics(SEED_FILE))
SEED_COUNT = len(SEED_EXAMPLES)
SEED_BY_ROUTE = {route: sum(e.route == route for e in SEED_EXAMPLES) for route in ("domain", "retrieval", "escalate")}


class MemoizingEmbedder:
    """Goes through the real model for every text it has not seen; same `encode` signature."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache: dict[str, np.ndarray] = {}

    def get_embedding_dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str], **kwargs: Any) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            vectors = self.model.encode(missing, **kwargs)
            self.cache.update(zip(missing, np.asarray(vectors), strict=True))
        return np.stack([self.cache[t] for t in texts])


@pytest.fixture(scope="session")
def cached_embedder(embedder: Any) -> MemoizingEmbedder:
    return MemoizingEmbedder(embedder)


@dataclass(frozen=True)
class FakeHit:
    score: float


class FakeKnowledge:
    """Scores like a policy knowledge base: shipping/returns/price words match well."""

    POLICY_WORDS = ("ship", "deliver", "return", "price", "cost", "club", "pay", "account", "password")

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.fail = False

    def search(self, question: str, k: int = 2) -> list[FakeHit]:
        self.queries.append(question)
        if self.fail:
            raise RuntimeError("chroma is down")
        hit = any(word in question.lower() for word in self.POLICY_WORDS)
        return [FakeHit(0.82), FakeHit(0.41)][:k] if hit else [FakeHit(0.22), FakeHit(0.2)][:k]

    def search_many(self, questions: list[str], k: int = 2) -> list[list[FakeHit]]:
        return [self.search(question, k) for question in questions]


@pytest.fixture
def fake_kb() -> FakeKnowledge:
    return FakeKnowledge()


@pytest.fixture
def router_settings(settings_factory: Callable[..., Settings], tmp_path: Path) -> Settings:
    """The shipped seed file, a tiny domain dataset, and a reload check on every decision."""
    domain = tmp_path / "seed_domain.jsonl"
    lines = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "..."}]}
        for q in ("How often should I water a Masdevallia?", "What light does a Nepenthes need?",
                  "How do I repot a Phalaenopsis?", "How do I feed a Venus flytrap?")
    ]
    domain.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return settings_factory(
        **{"router.seed_file": str(SEED_FILE), "router.reload_interval_s": 0.0,
           "training.seed_dataset": str(domain), "router.calibration_folds": 3}
    )


@pytest.fixture
def store(router_settings: Settings) -> Iterator[ConversationStore]:
    s = ConversationStore.open(router_settings.database_url)
    yield s
    s.close()
