"""Knowledge-base fixtures: a private knowledge folder and a knowledge base over it.

Most tests index a few tiny files (fast even with the real MiniLM); the sample knowledge base
is indexed once per module where a test needs realistic policies.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from bot.indexing.knowledge_base import KnowledgeBase, build_knowledge_base

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """An empty knowledge folder for tests that write their own documents."""
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder


@pytest.fixture
def make_kb(settings_factory: Callable[..., Settings], embedder: Any) -> Iterator[Callable[..., KnowledgeBase]]:
    """Build knowledge bases on settings rooted in tmp_path; all are closed after the test."""
    made: list[KnowledgeBase] = []

    def make(folder: Path, **overrides: Any) -> KnowledgeBase:
        settings = settings_factory(**{"knowledge.dir": str(folder), **overrides})
        kb = build_knowledge_base(settings, embedder)
        made.append(kb)
        return kb

    yield make
    for kb in made:
        kb.close()


@pytest.fixture(scope="module")
def sample_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Default settings over a copy of the shipped knowledge folder, in a folder of their own."""
    root = tmp_path_factory.mktemp("sample")
    shutil.copytree(REPO / "knowledge", root / "knowledge")
    (root / "config.toml").write_text("", encoding="utf-8")
    return load_settings(root / "config.toml", env={})


@pytest.fixture(scope="module")
def sample_kb(sample_settings: Settings, embedder: Any) -> Iterator[KnowledgeBase]:
    """The shipped sample knowledge base, indexed once for read-only tests in a module."""
    kb = build_knowledge_base(sample_settings, embedder)
    kb.sync()
    yield kb
    kb.close()
