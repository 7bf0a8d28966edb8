"""The conversation log works the same on PostgreSQL (a real server started for the test)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext
from tests.servers.postgres import postgres_server


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.mark.slow
def test_postgres_log_keeps_concurrent_turns_and_dedupes_events(pg_url: str) -> None:
    store = ConversationStore.open(pg_url)
    replica = ConversationStore.open(pg_url)  # second replica migrates as a no-op
    answer = Answer(text="Ships Monday to Wednesday.", route="retrieval", confidence=0.8, reason="topic")

    def writer(n: int) -> None:
        for i in range(25):
            store.log_turn(f"q{n}-{i}", answer, AskContext(channel="slack", user=f"U{n}", conversation_key=f"C:{n}"))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replica.count_turns() == 100
    assert store.claim_event("Ev1") is True
    assert replica.claim_event("Ev1") is False
    turn_id = store.log_turn("q", answer, AskContext())
    replica.record_feedback(turn_id, "U1", 1)
    store.record_feedback(turn_id, "U1", -1)
    assert replica.feedback_for(turn_id) == {"U1": -1}
    store.close()
    replica.close()
