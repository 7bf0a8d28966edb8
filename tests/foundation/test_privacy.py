"""Retention deletes exactly the old conversations; erasure removes every copy of one person's
words from the state directory, leaves everyone else's, and loses no answer given meanwhile."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.conversation_log.schema import ProcessedEvent, Turn, utcnow
from bot.factory import expert_memory_for
from bot.interfaces import Answer, AskContext, Draft, RouteDecision
from bot.pipeline import Pipeline
from bot.privacy import apply_retention, export_person, forget_person
from tests.servers.postgres import postgres_server

MARKER = "zebra-quokka-7781"


def log(store: ConversationStore, question: str, user: str, channel: str = "slack", text: str = "Water weekly.") -> int:
    return store.log_turn(question, Answer(text=text, route="domain", confidence=0.8, reason="t"),
                          AskContext(channel=channel, user=user, conversation_key=f"C:{user}:{question[:8]}"))


def age(store: ConversationStore, turn_id: int, days: int) -> None:
    with store._tx() as s:  # the clock of one turn set back, as if it were asked then
        s.execute(update(Turn).where(Turn.id == turn_id).values(created_at=utcnow() - timedelta(days=days)))


def check_retention(store: ConversationStore, settings: Settings) -> None:
    old, fresh = log(store, "Old question about a Lithops?", "U1"), log(store, "New question about a Lithops?", "U1")
    store.record_feedback(old, "U1", 1)
    store.add_staff_label(old, "USTAFF", "correct")
    store.claim_event("Ev-old")
    with store._tx() as s:
        s.execute(update(ProcessedEvent).values(received_at=utcnow() - timedelta(days=40)))
    age(store, old, 40)
    assert apply_retention(settings.model_copy(update={"privacy": settings.privacy.model_copy(
        update={"retention_days": 0})}), store).turns == 0, "0 keeps everything"
    removed = apply_retention(settings, store)
    assert (removed.turns, removed.feedback, removed.labels, removed.events) == (1, 1, 1, 1)
    assert store.get_turn(old) is None and store.get_turn(fresh) is not None
    assert store.labeled_turns() == [] and store.claim_event("Ev-old"), "the old event id is free again"


def test_retention_deletes_exactly_the_turns_older_than_the_limit_on_sqlite(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        check_retention(store, settings_factory(**{"privacy.retention_days": 30}))
    finally:
        store.close()


@pytest.mark.slow
def test_retention_deletes_exactly_the_turns_older_than_the_limit_on_postgres(
    settings_factory: Callable[..., Settings],
) -> None:
    with postgres_server() as url:
        store = ConversationStore.open(url)
        try:
            check_retention(store, settings_factory(**{"privacy.retention_days": 30}))
        finally:
            store.close()


def test_forget_erases_every_copy_of_a_persons_words_and_keeps_everyone_elses(
    settings_factory: Callable[..., Settings], embedder: object, tmp_path: Path,
) -> None:
    from bot.indexing.embedding import embed
    from bot.registry import ArtifactRegistry
    from training.dataset import export_dataset
    from training.router_training import train_router

    repo = Path(__file__).resolve().parents[2]
    settings = settings_factory(**{"training.seed_dataset": str(repo / "data" / "seed_domain.jsonl"),
                                   "router.seed_file": str(repo / "data" / "seed_routes.yaml")})
    store = ConversationStore.open(settings.database_url)
    mine = log(store, f"How often should I water my {MARKER} orchid?", "UGONE", text=f"Weekly, {MARKER}.")
    theirs = log(store, "How often should I water my Lithops?", "UKEEP")
    rasa = log(store, "Do you ship to Canada?", "UGONE", channel="rasa")
    store.add_staff_label(mine, "USTAFF", "incorrect", corrected_answer="Every 2 to 4 days.", correct_route="domain")
    store.add_staff_label(theirs, "USTAFF", "correct", correct_route="domain")
    store.record_feedback(theirs, "UGONE", -1)  # their vote on someone else's answer
    memory = expert_memory_for(settings, store, lambda texts: embed(embedder, list(texts)),
                               lambda text: embed(embedder, [text])[0], "test")
    memory.refresh(force=True)
    export = export_dataset(settings, store, settings.state_dir / "training" / "runs" / "r1" / "data")
    (settings.state_dir / "training" / "runs" / "r1" / "report.md").write_text(
        f"**Q: How often should I water my {MARKER} orchid?**\n", encoding="utf-8")
    train_router(settings, embedder=embedder, store=store)
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    (adapter_dir / "adapter_config.json").write_text("{}", encoding="utf-8")
    ArtifactRegistry(settings.state_dir / "adapters").add(adapter_dir, {"data_hash": export.data_hash})

    exported = export_person(store, "slack", "UGONE")
    assert [t["question"] for t in exported["turns"]] == [f"How often should I water my {MARKER} orchid?"]
    assert exported["votes"] == [{"turn_id": theirs, "vote": -1, "at": exported["votes"][0]["at"]}]

    report = forget_person(settings, store, "slack", "UGONE", memory=memory)
    memory.close()
    assert (report.turns, report.labels, report.feedback, report.memory_entries) == (1, 1, 1, 1)
    assert report.export_rows == 1 and report.adapters_trained_on_them == ["v0001"]
    assert report.routers_trained_on_them == ["v0001"]
    hits = [p for p in settings.state_dir.rglob("*") if p.is_file() and MARKER.encode() in p.read_bytes()]
    assert hits == [], f"the person's words are still in {hits}"
    assert store.get_turn(mine) is None and store.get_turn(rasa) is not None, "only the Slack user was named"
    assert store.get_turn(theirs) is not None and store.feedback_for(theirs) == {}
    assert [t.turn_id for t in store.labeled_turns()] == [theirs]
    again = export_dataset(settings, store, tmp_path / "after")
    rows = (tmp_path / "after" / "train.jsonl").read_text(encoding="utf-8") + (
        tmp_path / "after" / "eval.jsonl").read_text(encoding="utf-8")
    assert MARKER not in rows and "Lithops" in rows and again.data_hash != export.data_hash
    store.close()


class Router:
    def decide(self, question: str) -> RouteDecision:
        return RouteDecision(route="domain", confidence=0.9, reason="t")


class Domain:
    route = "domain"

    def answer(self, question: str, ctx: AskContext, on_partial: object = None) -> Draft:
        return Draft(text="Water weekly.")


def test_erasure_while_the_bot_answers_loses_no_other_turn(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory()
    store = ConversationStore.open(settings.database_url)
    pipeline = Pipeline.from_settings(settings, store, Router(), {"domain": Domain(), "escalate": EscalationAnswerer(settings.app.company_name)})
    for i in range(30):
        pipeline.answer(f"{MARKER} question {i}", AskContext(channel="slack", user="UGONE", conversation_key=f"g{i}"))
    answered: list[int] = []

    def customers() -> None:
        for i in range(60):
            answer = pipeline.answer(f"Question {i} about a Lithops?",
                                     AskContext(channel="slack", user=f"U{i % 5}", conversation_key=f"k{i}"))
            answered.append(answer.turn_id or 0)

    worker = threading.Thread(target=customers)
    worker.start()
    report = forget_person(settings, store, "slack", "UGONE")
    worker.join()
    assert report.turns == 30
    assert len(answered) == 60 and all(store.get_turn(t) is not None for t in answered)
    assert store.count_turns() == 60
    store.close()
    assert json.dumps(report.as_dict())  # the CLI prints it as JSON


@pytest.mark.slow
def test_forget_on_postgres_removes_one_person_and_keeps_the_rest(settings_factory: Callable[..., Settings]) -> None:
    with postgres_server() as url:
        store = ConversationStore.open(url)
        try:
            gone = log(store, f"{MARKER} question", "UGONE")
            kept = log(store, "Another customer's question", "UKEEP")
            store.add_staff_label(gone, "USTAFF", "correct")
            store.record_feedback(kept, "UGONE", 1)
            report = forget_person(settings_factory(database__url=url), store, "slack", "UGONE")
            assert (report.turns, report.labels, report.feedback) == (1, 1, 1)
            assert store.get_turn(gone) is None and store.get_turn(kept) is not None
            assert export_person(store, "slack", "UGONE")["turns"] == []
        finally:
            store.close()
