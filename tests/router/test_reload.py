"""The running router picks up new versions without a restart and survives broken files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.registry import router_registry
from bot.router import TopicRouter
from bot.routing.classifier import ARRAYS_FILE, META_FILE
from training.router_training import train_router


def test_new_version_is_served_after_the_check_interval_without_restart(
    settings_factory: Any, router_settings: Settings, cached_embedder: Any, store: ConversationStore
) -> None:
    settings = settings_factory(**{"router.seed_file": str(router_settings.router.seed_file),
                                   "router.reload_interval_s": 2.0, "router.calibration_folds": 3})
    now = [100.0]
    router = TopicRouter(settings.router, router_registry(settings), embedder=cached_embedder, clock=lambda: now[0])
    assert router.version.startswith("zero-shot:")
    train_router(settings, embedder=cached_embedder, store=store)
    now[0] += 1.0  # within the interval: the registry is not even read
    assert router.decide("Do you ship to Canada?").router_version.startswith("zero-shot:")
    now[0] += 1.5
    decision = router.decide("Do you ship to Canada?")
    assert decision.router_version == "v0001" and decision.route == "retrieval"
    registry = router_registry(settings)
    registry.rollback()  # staff roll back past the first version: zero-shot again
    now[0] += 2.5
    assert router.decide("Do you ship to Canada?").router_version.startswith("zero-shot:")


def corrupt(path: Any, how: str) -> None:
    if how == "garbage":
        (path / ARRAYS_FILE).write_bytes(b"\x00not a numpy archive")
    elif how == "missing":
        (path / ARRAYS_FILE).unlink()
    elif how == "truncated-json":
        (path / META_FILE).write_text('{"format": "supportbot-router/1", "topics": [', encoding="utf-8")


@pytest.mark.parametrize("how", ["garbage", "missing", "truncated-json"])
def test_unusable_router_file_at_start_falls_back_to_zero_shot_with_one_warning(
    how: str, router_settings: Settings, cached_embedder: Any, store: ConversationStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    report = train_router(router_settings, embedder=cached_embedder, store=store)
    corrupt(router_registry(router_settings).get(report.version).path, how)
    with caplog.at_level("WARNING"):
        router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder)
        decisions = [router.decide(q) for q in ("Do you ship to Canada?", "How do I water a Lithops?")]
    assert [d.route for d in decisions] == ["retrieval", "domain"]
    assert all(d.router_version.startswith("zero-shot:") for d in decisions)
    assert "router v0001 unusable" in decisions[0].reason
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "v0001 is unusable" in warnings[0].getMessage()


def test_unusable_new_version_keeps_the_current_one_serving(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    train_router(router_settings, embedder=cached_embedder, store=store)
    router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder)
    router.warm_up()  # v0001 serves (as after build_runtime) when v0002 arrives
    second = train_router(router_settings, embedder=cached_embedder, store=store)
    corrupt(router_registry(router_settings).get(second.version).path, "garbage")
    with caplog.at_level("WARNING"):
        decisions = [router.decide("Do you ship to Canada?") for _ in range(3)]
    assert {d.router_version for d in decisions} == {"v0001"}
    assert {d.route for d in decisions} == {"retrieval"}
    assert sum("v0002 is unusable" in r.getMessage() for r in caplog.records) == 1


def test_router_built_for_another_embedder_is_not_used(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After models.embedder_path changes, an old router's vectors mean nothing: route
    zero-shot with the new embedder until someone retrains."""
    train_router(router_settings, embedder=cached_embedder, store=store)

    class OtherEmbedder:
        def get_embedding_dimension(self) -> int:
            return 768

        def encode(self, texts: list[str], **kwargs: Any) -> Any:
            return cached_embedder.encode(texts, **kwargs)

    with caplog.at_level("WARNING"):
        router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=OtherEmbedder())
    assert router.version.startswith("zero-shot:")
    assert any("768" in r.getMessage() and "unusable" in r.getMessage() for r in caplog.records)


def test_a_fresh_install_trains_its_router_before_the_first_answer_and_only_then(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore,
) -> None:
    from bot.factory import train_first_router

    assert train_first_router(router_settings, cached_embedder, store, knowledge=None) == "v0001"
    router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder)
    assert router.decide("Do you ship to Canada?").router_version == "v0001"
    assert train_first_router(router_settings, cached_embedder, store, knowledge=None) is None, \
        "a promoted router is never replaced at start"


def test_a_router_that_cannot_be_trained_at_start_leaves_zero_shot_routing_and_says_why(
    settings_factory: Any, cached_embedder: Any, store: ConversationStore, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot.factory import train_first_router

    seed = tmp_path / "one_topic.yaml"
    seed.write_text("version: 1\ntopics:\n  - name: watering\n    route: domain\n    examples:\n"
                    "      - How often should I water a Lithops?\n      - Does my orchid need water?\n", encoding="utf-8")
    settings = settings_factory(**{"router.seed_file": str(seed)})
    with caplog.at_level("WARNING"):
        assert train_first_router(settings, cached_embedder, store, knowledge=None) is None
    assert "router training at start failed" in caplog.text and "at least two topics" in caplog.text
    assert router_registry(settings).current_version() is None


def test_a_router_constructs_without_loading_and_loads_at_warm_up(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore,
) -> None:
    """Construction takes configuration only (the runtime decides when minutes of loading
    happen); the first decision loads what a forgotten warm_up would have."""
    train_router(router_settings, embedder=cached_embedder, store=store)
    cold = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder)
    assert cold._loaded is None and cold._query_encoder is None
    cold.warm_up()
    assert cold.version == "v0001" and cold._query_encoder is not None
    lazy = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder)
    assert lazy.decide("Do you ship to Canada?").router_version == "v0001"
