"""Training fixtures: settings on the tiny random Llama, a small seed file, a labeled log."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext

SEED = [
    ("How often should I water a Masdevallia orchid?",
     "Keep it evenly moist; water every two to four days with rainwater."),
    ("What light does a Phalaenopsis need?", "Bright, indirect light such as an east window."),
    ("Does a Venus flytrap need dormancy?", "Yes, three to four cool months each winter at 0-10 C."),
    ("What soil do Lithops need?", "A fast-draining mineral mix, mostly pumice or grit."),
    ("How do I care for a Nepenthes?", "Bright indirect light, high humidity and moist sphagnum."),
    ("Can I use tap water for carnivorous plants?", "No, use rainwater, distilled or RO water."),
    ("Why is my Echeveria stretching?", "It needs more light; give it several hours of sun."),
    ("How often should I water Haworthia?", "Only when the soil is dry, about every two weeks."),
]


def write_seed(path: Path, pairs: list[tuple[str, str]] = SEED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
        for q, a in pairs
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_settings(
    settings_factory: Callable[..., Settings], tiny_llm_dir: Path, tmp_path: Path
) -> Callable[..., Settings]:
    """Settings that train the tiny model for a few steps; keyword args override (dotted __)."""

    def make(**overrides: Any) -> Settings:
        seed = write_seed(tmp_path / "seed.jsonl")
        values: dict[str, Any] = {
            "models__base_llm_path": str(tiny_llm_dir),
            "training__seed_dataset": str(seed),
            "training__batch_size": 4,
            "training__epochs": 2,
            "training__lr": 0.01,
            "training__lora_r": 4,
            "training__lora_alpha": 8,
            "training__max_length": 96,
            "training__checkpoint_every": 2,
            "training__eval_fraction": 0.25,
            "training__eval_max_questions": 0,
            "training__eval_max_new_tokens": 8,
            "training__retrain_router": False,
            "training__device": "cpu",
            "models__torch_threads": 2,
        }
        values.update(overrides)
        return settings_factory(**values)

    return make


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    s = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    yield s
    s.close()


def add_labeled_turn(
    store: ConversationStore, question: str, answer: str, route: str = "domain", *,
    verdict: str = "correct", corrected: str = "", correct_route: str = "",
) -> int:
    turn_id = store.log_turn(
        question, Answer(text=answer, route=route, confidence=0.9, reason="test"), AskContext(user="cust")  # type: ignore[arg-type]
    )
    store.add_staff_label(turn_id, "USTAFF", verdict, corrected_answer=corrected, correct_route=correct_route)
    return turn_id
