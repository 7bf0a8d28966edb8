"""While the bot runs, an edited, new or deleted file is reflected in search within seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bot.indexing.knowledge_base import KnowledgeBase

DEADLINE_S = 10.0  # generous for a loaded CI machine; the benchmark measures the real delay


def wait_until(condition: Callable[[], bool], timeout: float = DEADLINE_S) -> float:
    """Poll until `condition` holds; returns the seconds it took (fails the test at the deadline)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


def test_watcher_picks_up_an_edit_a_new_file_and_a_deletion(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    policy = docs / "shipping.md"
    policy.write_text("# Shipping\n\nWe ship on Mondays.\n", encoding="utf-8")
    kb = make_kb(docs, **{"knowledge.watch_debounce_ms": 200})
    kb.sync()
    kb.start_watching()

    policy.write_text("# Shipping\n\nWe ship on Mondays and Tuesdays via Zephyrcourier.\n", encoding="utf-8")
    wait_until(lambda: "Zephyrcourier" in kb.search("Which courier ships orders?", k=1)[0].text)

    (docs / "faq").mkdir()
    (docs / "faq" / "plants.txt").write_text("Quokkafern plants need bright shade.", encoding="utf-8")
    wait_until(lambda: kb.search("quokkafern light", k=1)[0].source.path == "faq/plants.txt")

    policy.unlink()
    wait_until(lambda: all(h.source.path != "shipping.md" for h in kb.search("courier shipping days", k=5)))


def test_changes_made_before_watching_starts_are_not_missed(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    (docs / "a.md").write_text("Orchids ship in spring.", encoding="utf-8")
    kb = make_kb(docs)
    kb.sync()
    (docs / "b.md").write_text("Nepenthes ship all year round.", encoding="utf-8")
    kb.start_watching()  # catches up with b.md before returning
    assert kb.search("when do nepenthes ship", k=1)[0].source.path == "b.md"


def test_close_stops_the_watcher(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    (docs / "a.md").write_text("Orchids ship in spring.", encoding="utf-8")
    kb = make_kb(docs, **{"knowledge.watch_debounce_ms": 100})
    kb.sync()
    kb.start_watching()
    watcher = kb.indexer._watcher
    assert watcher is not None and watcher._thread is not None
    thread = watcher._thread
    kb.close()
    assert not thread.is_alive()


def test_a_replica_that_never_indexes_follows_what_the_indexer_publishes(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    """Several bot replicas, one indexer job: the replicas share its state dir and index."""
    policy = docs / "shipping.md"
    policy.write_text("# Shipping\n\nWe ship on Mondays.\n", encoding="utf-8")
    indexer = make_kb(docs)
    indexer.sync()
    replica = make_kb(docs, **{"knowledge.watch": False, "knowledge.follow_interval_s": 0.1})
    frozen = make_kb(docs, **{"knowledge.watch": False})  # follow off: keeps what it loaded
    assert "Mondays" in replica.search("When do you ship?", k=1)[0].text
    assert "Mondays" in frozen.search("When do you ship?", k=1)[0].text

    policy.write_text("# Shipping\n\nWe ship on Mondays and Tuesdays via Zephyrcourier.\n", encoding="utf-8")
    indexer.sync()
    wait_until(lambda: "Zephyrcourier" in replica.search("Which courier ships orders?", k=1)[0].text)
    assert "Zephyrcourier" not in frozen.search("Which courier ships orders?", k=1)[0].text
