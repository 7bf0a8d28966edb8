"""With `knowledge.chroma_url` set, the index lives in a real Chroma server started by the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.indexing.knowledge_base import KnowledgeBase
from tests.servers.chroma import _free_port
from tests.servers.chroma import chroma_server as start_chroma_server


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    with start_chroma_server(tmp_path / "chroma-server") as url:
        yield url


def test_index_and_search_through_a_chroma_server(
    chroma_server: str, docs: Path, make_kb: Callable[..., KnowledgeBase], tmp_path: Path
) -> None:
    (docs / "returns.md").write_text("# Returns\n\nPots can be returned within 30 days.\n", encoding="utf-8")
    kb = make_kb(docs, **{"knowledge.chroma_url": chroma_server})
    assert kb.sync().added == ["returns.md"]
    assert kb.search("return a pot", k=1)[0].source.path == "returns.md"
    assert not (tmp_path / "var" / "chroma").exists()  # nothing embedded locally
    (docs / "returns.md").write_text("# Returns\n\nPots can be returned within 45 days.\n", encoding="utf-8")
    assert kb.sync().updated == ["returns.md"]
    kb.close()
    restarted = make_kb(docs, **{"knowledge.chroma_url": chroma_server})
    assert "45 days" in restarted.search("return a pot", k=1)[0].text  # served from the server
    assert restarted.sync().unchanged == 1


def test_unreachable_server_is_a_config_error(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    with pytest.raises(ConfigError, match="cannot reach the Chroma server"):
        make_kb(docs, **{"knowledge.chroma_url": f"http://127.0.0.1:{_free_port()}"}).sync()


def test_malformed_server_url_is_a_config_error(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    with pytest.raises(ConfigError, match="knowledge.chroma_url"):
        make_kb(docs, **{"knowledge.chroma_url": "chroma:8000"}).sync()
