"""Fixtures for the expert memory: a real SQLite log, the real MiniLM, a small seed file, and a
stand-in LLM that records the prompts it is served (so a test can see the grounding)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.factory import expert_memory_for
from bot.indexing.embedding import embed
from bot.llm.backend import AdapterRef, GenerationParams, GenerationResult
from bot.memory import ExpertMemory

SEED = [
    ("How often should I water a Masdevallia orchid?",
     "Keep a Masdevallia evenly moist and never let it dry out completely; water every two to four days."),
    ("What are the symptoms of root rot in orchids?",
     "Rotten orchid roots are brown, mushy or hollow and smell bad; healthy ones are firm and green."),
    ("What are the symptoms of sunburn in orchids?",
     "Sunburnt orchid leaves get yellow or white patches with a dark rim where the light hit them."),
    ("How do I repot a Nepenthes?",
     "Repot a Nepenthes in spring into an airy mix of long-fibre sphagnum, perlite and orchid bark."),
]


def write_seed(path: Path, pairs: list[tuple[str, str]]) -> Path:
    lines = [json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
             for q, a in pairs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class RecordingModel:
    """Answers with a fixed text and remembers each prompt; stands in for the domain LLM."""

    text: str = "Orchids like bright, indirect light and a weekly soak."
    prompts: list[list[dict[str, str]]] = field(default_factory=list)
    version: str = "base"
    serial: bool = True

    def generate(self, messages: list[dict[str, str]], params: GenerationParams, on_text: Any = None,
                 should_stop: Any = None) -> GenerationResult:
        self.prompts.append(messages)
        if on_text is not None:
            on_text(self.text)  # streamed as one piece
        return GenerationResult(text=self.text, new_tokens=12, finish_reason="stop")

    def close(self) -> None:
        pass


@dataclass
class RecordingBackend:
    model: RecordingModel = field(default_factory=RecordingModel)
    name: str = "recording"

    def load(self, adapter: AdapterRef | None) -> RecordingModel:
        return self.model

    def close(self) -> None:
        pass


@pytest.fixture
def memory_settings(settings_factory: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        seed = write_seed(tmp_path / "seed.jsonl", SEED)
        return settings_factory(**{"training.seed_dataset": str(seed), "memory.poll_s": 0.2, **overrides})

    return make


@pytest.fixture
def make_memory(embedder: Any) -> Callable[[Settings, ConversationStore], ExpertMemory]:
    made: list[ExpertMemory] = []

    def make(settings: Settings, store: ConversationStore) -> ExpertMemory:
        memory = expert_memory_for(settings, store, lambda texts: embed(embedder, list(texts)),
                                   lambda text: embed(embedder, [text])[0], "test-minilm")
        memory.refresh(force=True)
        made.append(memory)
        return memory

    yield make
    for memory in made:
        memory.close()
