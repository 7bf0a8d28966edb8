"""The same questions get the same answers on every deployment shape the scaling guide describes.

One test body, four shapes: the embedded defaults (SQLite file + embedded Chroma), PostgreSQL,
a Chroma server, and both (the docker-compose layout). Everything is real: the sample
knowledge base indexed by the indexer's code path, the runtime built by `build_runtime` as
`supportbot serve` builds it, the router, the retrieval and escalation answerers, and the
conversation log read back from the configured database. The shapes are chosen the way the
compose file chooses them, through `SUPPORTBOT_*` environment variables. The domain model is
the tiny random Llama; neither question is routed to it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from sqlalchemy import create_engine, text

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.factory import build_runtime
from bot.indexing.knowledge_base import build_knowledge_base
from bot.interfaces import AskContext

REPO = Path(__file__).resolve().parents[2]

SHIPPING = "How long does shipping to Canada take?"
REFUND = "My flytrap arrived dead, I want a refund"

# name: (conversation log on PostgreSQL, knowledge index on a Chroma server)
SHAPES = {
    "embedded-defaults": (False, False),
    "postgres": (True, False),
    "chroma-server": (False, True),
    "postgres+chroma-server": (True, True),
}

# First answer text seen per question; every other shape must give the same text.
FIRST_ANSWERS: dict[str, str] = {}


def slack_context(n: int) -> AskContext:
    return AskContext(channel="slack", user="U0CUSTOMER", conversation_key=f"C0SUPPORT:17000000{n}.0001",
                      slack_channel="C0SUPPORT", thread_ts=f"17000000{n}.0001", event_id=f"Ev0DEPLOY{n}")


@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_same_routes_sources_and_logged_turns_on_every_shape(
    shape: str,
    request: pytest.FixtureRequest,
    settings_factory: Callable[..., Settings],
    sample_knowledge: Path,
    tiny_llm_dir: Path,
    embedder: Any,
    tmp_path: Path,
) -> None:
    on_postgres, on_chroma_server = SHAPES[shape]
    env: dict[str, str] = {}
    if on_postgres:
        env["SUPPORTBOT_DATABASE__URL"] = request.getfixturevalue("postgres_database")
    if on_chroma_server:
        env["SUPPORTBOT_KNOWLEDGE__CHROMA_URL"] = request.getfixturevalue("chroma_url")
        env["SUPPORTBOT_KNOWLEDGE__COLLECTION"] = f"deploy-{uuid.uuid4().hex[:8]}"
    settings = settings_factory(
        env=env,
        **{
            "knowledge.dir": str(sample_knowledge),
            "knowledge.watch": False,
            "models.base_llm_path": str(tiny_llm_dir),
            "domain.backend": "hf",
            "router.seed_file": str(REPO / "data" / "seed_routes.yaml"),
            "training.seed_dataset": str(REPO / "data" / "seed_domain.jsonl"),
        },
    )
    state_dir = tmp_path / "var"

    # The indexer job: the only writer of the index.
    indexer = build_knowledge_base(settings, embedder)
    try:
        report = indexer.sync()
    finally:
        indexer.close()
    assert "shipping.md" in report.added and not report.skipped
    assert report.chunks_total > 0

    # A bot replica: built as `supportbot serve` builds it, reading what the indexer wrote.
    runtime = build_runtime(settings, watch=settings.knowledge.watch)
    try:
        shipping = runtime.pipeline.answer(SHIPPING, slack_context(1))
        refund = runtime.pipeline.answer(REFUND, slack_context(2))
    finally:
        runtime.close()

    assert shipping.route == "retrieval", shipping
    assert shipping.sources and shipping.sources[0].path == "shipping.md"
    assert shipping.sources[0].url == "https://rareroots.example/help/shipping"
    assert "Canada" in shipping.text
    assert refund.route == "escalate", refund
    for question, answer in ((SHIPPING, shipping), (REFUND, refund)):
        assert FIRST_ANSWERS.setdefault(question, answer.text) == answer.text, (shape, question)

    # The turns are in the configured database, readable from any replica.
    engine = create_engine(settings.database_url)
    try:
        assert engine.dialect.name == ("postgresql" if on_postgres else "sqlite")
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, question, route, channel, sources FROM turns ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [(r.id, r.question, r.route, r.channel) for r in rows] == [
        (shipping.turn_id, SHIPPING, "retrieval", "slack"),
        (refund.turn_id, REFUND, "escalate", "slack"),
    ]
    logged_sources = rows[0].sources if isinstance(rows[0].sources, list) else json.loads(rows[0].sources)
    assert logged_sources[0]["path"] == "shipping.md"
    assert (state_dir / "supportbot.db").exists() is not on_postgres
    replica = ConversationStore.open(settings.database_url)
    other = ConversationStore.open(settings.database_url)
    try:
        assert replica.count_turns() == 2
        assert replica.claim_event("Ev0RETRY") is True
        assert other.claim_event("Ev0RETRY") is False  # a Slack retry on the other replica
    finally:
        replica.close()
        other.close()

    # The index lives where the shape puts it.
    assert (state_dir / "chroma").exists() is not on_chroma_server
    if on_chroma_server:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        server = urlparse(settings.knowledge.chroma_url)
        client = chromadb.HttpClient(host=server.hostname, port=server.port,
                                     settings=ChromaSettings(anonymized_telemetry=False))
        assert client.get_collection(settings.knowledge.collection).count() == report.chunks_total
