"""Retraining: staff labels from the log change decisions; the report says how good the router is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.errors import ConfigError
from bot.interfaces import Answer, AskContext
from bot.registry import router_registry
from bot.router import TopicRouter
from bot.routing.seed import load_seed_topics
from tests.router.conftest import SEED_BY_ROUTE, SEED_COUNT
from training.router_training import train_router

# The shop publishes an unboxing guide in knowledge/: arrival questions that the seed file
# treats as plant care should now be answered from that policy.
NEW_POLICY = "What should I do with my orchid when it arrives?"
PARAPHRASES = [
    "How do I unpack my new plant when it arrives?",
    "What should I do with my plant right after delivery?",
    "How should I care for my flytrap in its first week after delivery?",
]


def label(store: ConversationStore, question: str, logged_route: str, correct_route: str) -> None:
    turn = store.log_turn(question, Answer(text="...", route=logged_route, confidence=0.9, reason="test"),  # type: ignore[arg-type]
                          AskContext(channel="slack", user="U1"))
    store.add_staff_label(turn, "USTAFF", "incorrect", correct_route=correct_route)


def test_staff_route_labels_change_the_decision_after_retraining(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore
) -> None:
    first = train_router(router_settings, embedder=cached_embedder, store=store)
    router = TopicRouter(router_settings.router, router_registry(router_settings), embedder=cached_embedder)
    before = router.decide(NEW_POLICY)
    assert before.route == "domain"
    for question in [NEW_POLICY, *PARAPHRASES]:  # staff flag the misrouted turns in Slack
        label(store, question, "domain", "retrieval")
    second = train_router(router_settings, embedder=cached_embedder, store=store)
    assert router.refresh() is True  # the running router swaps in the new version
    after = router.decide(NEW_POLICY)
    assert after.route == "retrieval", after
    assert after.router_version == second.version == "v0002"
    assert first.examples_by_source == {"seed": SEED_COUNT}
    assert second.examples_by_source == {"seed": SEED_COUNT, "staff": 4}


def test_latest_staff_label_wins_and_labels_without_a_route_are_ignored(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore
) -> None:
    turn = store.log_turn(NEW_POLICY, Answer(text="...", route="domain", confidence=0.9, reason="t"),
                          AskContext())
    store.add_staff_label(turn, "U1", "incorrect", correct_route="escalate")
    store.add_staff_label(turn, "U2", "incorrect", correct_route="retrieval")
    other = store.log_turn("thanks", Answer(text="...", route="domain", confidence=0.9, reason="t"), AskContext())
    store.add_staff_label(other, "U1", "correct")  # no route named: not a routing label
    report = train_router(router_settings, embedder=cached_embedder, store=store)
    assert report.examples_by_source == {"seed": SEED_COUNT, "staff": 1}
    assert report.examples_by_route["retrieval"] == SEED_BY_ROUTE["retrieval"] + 1  # the latest label


def test_training_report_has_cross_validated_figures_and_saves_a_version(
    router_settings: Settings, cached_embedder: Any, store: ConversationStore
) -> None:
    report = train_router(router_settings, embedder=cached_embedder, store=store, promote=False)
    # The shipped seed file is good enough to route most unseen questions right.
    assert report.cv_accuracy >= 0.85 and report.cv_macro_f1 >= 0.85
    assert report.routes == ["domain", "retrieval", "escalate"]
    assert sum(map(sum, report.confusion)) == SEED_COUNT
    assert [sum(row) for row in report.confusion] == list(SEED_BY_ROUTE.values())
    assert report.used_domain_signal and not report.used_kb_signals
    registry = router_registry(router_settings)
    assert [v.version for v in registry.list()] == ["v0001"]
    assert registry.current_version() is None  # not promoted: the bot keeps routing as before
    assert registry.get("v0001").metadata["cv_macro_f1"] == report.cv_macro_f1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("topics:\n  - name: a\n    route: sales\n    examples: [x, y]\n", "route 'sales' is not one of"),
        ("topics:\n  - name: a\n    route: domain\n    examples: [only one]\n", "needs at least 2"),
        ("topics:\n  - name: a\n    route: domain\n    examples: [x, y]\n"
         "  - name: a\n    route: escalate\n    examples: [z, w]\n", "used twice"),
        ("topics: [\n", "not valid YAML"),
        ("topics:\n  - name: a\n    route: domain\n    exemples: [x, y]\n", "unknown key(s) ['exemples']"),
    ],
)
def test_seed_file_mistakes_get_an_error_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    seed = tmp_path / "seed.yaml"
    seed.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_seed_topics(seed)
    assert message in str(err.value)
    assert str(seed) in str(err.value)


def test_missing_seed_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="router.seed_file: .*does not exist"):
        load_seed_topics(tmp_path / "nope.yaml")
