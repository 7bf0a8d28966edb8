"""Symbolic links in knowledge/ never carry text from outside it to customers, and none is skipped silently."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.indexing.folder import scan_folder
from bot.indexing.knowledge_base import KnowledgeBase

RETURNS = "# Returns\n\nPots and tools can be returned within 30 days of delivery.\n"
SECRET = "# Server\n\nThe admin password of the shop server is tulip-umbrella-42.\n"


@pytest.fixture
def linked_folder(tmp_path: Path, docs: Path) -> Path:
    """docs/ with a real file, links inside and out, a loop and a broken link."""
    (docs / "returns.md").write_text(RETURNS, encoding="utf-8")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "server.md").write_text(SECRET, encoding="utf-8")
    (docs / "server.md").symlink_to(outside / "server.md")  # out of the folder
    (docs / "leaked").symlink_to(outside, target_is_directory=True)  # a folder out of it
    (docs / "loop.md").symlink_to("loop.md")  # points at itself
    (docs / "gone.md").symlink_to(docs / "deleted.md")  # broken
    (docs / "policy").mkdir()
    (docs / "policy" / "again.md").symlink_to("../returns.md")  # inside: fine
    (docs / "policy" / "up").symlink_to("..", target_is_directory=True)  # a folder loop
    return docs


def test_scan_follows_links_only_inside_the_folder(linked_folder: Path) -> None:
    files, unsupported, refused = scan_folder(linked_folder)
    assert [rel for rel, _ in files] == ["policy/again.md", "returns.md"]
    assert dict(files)["policy/again.md"] == (linked_folder / "returns.md").resolve()
    assert unsupported == []
    reasons = {rel: reason for rel, _, reason in refused}
    assert sorted(reasons) == ["gone.md", "leaked", "loop.md", "policy/up", "server.md"]
    assert reasons["server.md"].startswith("symbolic link to ") and "outside the knowledge folder" in reasons["server.md"]
    assert "outside the knowledge folder" in reasons["leaked"]
    assert reasons["loop.md"].startswith("symbolic link loop")
    assert reasons["policy/up"].startswith("symbolic link loop")
    assert reasons["gone.md"].startswith("broken symbolic link")


def test_outside_link_is_not_indexed_and_every_refused_link_is_warned_once(
    linked_folder: Path, make_kb: Callable[..., KnowledgeBase], caplog: pytest.LogCaptureFixture
) -> None:
    kb = make_kb(linked_folder)
    with caplog.at_level(logging.WARNING, logger="bot.indexing.knowledge_base"):
        report = kb.sync()
        kb.sync()  # the next sync (the watcher's) does not repeat the warnings
    assert sorted(report.added) == ["policy/again.md", "returns.md"]
    assert sorted(report.skipped) == ["gone.md", "leaked", "loop.md", "policy/up", "server.md"]
    indexed = {c.meta.get("path") for c in kb.index.open_store().load_all()}
    assert indexed == {"policy/again.md", "returns.md"}
    assert all("tulip-umbrella" not in hit.text for hit in kb.search("admin password of the shop server"))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for rel in ("server.md", "leaked", "loop.md", "policy/up", "gone.md"):
        assert len([w for w in warnings if w.startswith(f"skipped knowledge file {rel}:")]) == 1, warnings


def test_knowledge_folder_reached_through_a_link_still_indexes(
    tmp_path: Path, docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    (docs / "returns.md").write_text(RETURNS, encoding="utf-8")
    alias = tmp_path / "knowledge-alias"
    os.symlink(docs, alias)
    files, _, refused = scan_folder(alias)
    assert [rel for rel, _ in files] == ["returns.md"] and refused == []
    assert make_kb(alias).sync().added == ["returns.md"]


def test_link_retargeted_outside_is_dropped_not_kept_serving(
    tmp_path: Path, docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    (docs / "returns.md").write_text(RETURNS, encoding="utf-8")
    (docs / "alias.md").symlink_to("returns.md")
    kb = make_kb(docs)
    assert sorted(kb.sync().added) == ["alias.md", "returns.md"]
    (tmp_path / "server.md").write_text(SECRET, encoding="utf-8")
    (docs / "alias.md").unlink()
    (docs / "alias.md").symlink_to(tmp_path / "server.md")
    report = kb.sync()
    assert report.removed == ["alias.md"] and report.skipped == ["alias.md"]
    assert {c.meta.get("path") for c in kb.index.open_store().load_all()} == {"returns.md"}
