"""A fresh install answers at once and serves a fine-tuned seed adapter as soon as one is promoted.

The runtime is built as `supportbot serve` builds it, on the tiny random Llama (HF backend) and
the real MiniLM; the seed adapter is trained by the real background child process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.factory import build_runtime
from bot.interfaces import AskContext
from bot.registry import adapter_registry
from bot.training_record import last_training_run
from tests.training.conftest import SEED
from training.background import SeedAdapterJob, needs_seed_adapter

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_settings(tiny_settings: Callable[..., Settings], sample_knowledge: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        return tiny_settings(**{
            "knowledge__dir": str(sample_knowledge), "knowledge__watch": False, "domain__backend": "hf",
            "domain__max_new_tokens": 8, "domain__adapter_poll_s": 0.5,
            "router__seed_file": str(REPO / "data" / "seed_routes.yaml"),
            **overrides,
        })

    return make


@pytest.mark.slow
def test_a_fresh_state_dir_ends_with_a_promoted_adapter_while_questions_are_answered(
    fresh_settings: Callable[..., Settings], embedder: Any
) -> None:
    settings = fresh_settings()
    assert needs_seed_adapter(settings)
    runtime = build_runtime(settings, train_seed_adapter=True)
    try:
        job = runtime.seed_training
        assert isinstance(job, SeedAdapterJob) and job.process is not None
        assert runtime.domain.current_version == "base"
        answers = []
        deadline = time.monotonic() + 600
        n = 0
        while not job.done.wait(timeout=0.5) and time.monotonic() < deadline:  # customers, a few a second
            question = SEED[n % len(SEED)][0] if n % 2 else "My orchid's new leaves are wrinkled, why?"
            answers.append(runtime.pipeline.answer(question, AskContext(channel="cli", user=f"u{n}")))
            n += 1
        assert job.done.wait(timeout=max(1.0, deadline - time.monotonic())), "seed training did not finish"
        runtime.domain.refresh_adapter(wait=True)
        swapped = runtime.domain.current_version
        after = runtime.pipeline.answer("My orchid's new leaves are wrinkled, why?", AskContext(channel="cli"))
    finally:
        runtime.close()

    assert job.outcome is not None and job.outcome.status == "promoted", job.outcome
    assert adapter_registry(settings).current_version() == "v0001" == swapped
    assert answers, "no question was asked while the adapter trained"
    for answer in [*answers, after]:  # none failed: each was answered and logged
        assert answer.text.strip() and answer.turn_id is not None
        assert "error" not in (answer.fallback_reason or "").lower()
    assert not needs_seed_adapter(settings)  # the next start does not train again


def test_no_background_training_when_turned_off_or_already_trained(
    fresh_settings: Callable[..., Settings],
) -> None:
    assert not needs_seed_adapter(fresh_settings(training__seed_adapter_at_start=False))
    settings = fresh_settings()
    assert needs_seed_adapter(settings)
    from bot.atomic import atomic_write_json

    atomic_write_json(settings.state_dir / "training" / "last_run.json", {"status": "rejected"})
    assert last_training_run(settings) is not None and not needs_seed_adapter(settings)
    assert not SeedAdapterJob(settings).start()  # a gate that said no once is not asked again at every start
