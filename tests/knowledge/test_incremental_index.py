"""`sync` indexes only what changed, drops what was removed, and survives bad files and crashes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.indexing.knowledge_base import KnowledgeBase
from tests.knowledge.pdfgen import make_pdf

RETURNS = """---
title: Returns
url: https://shop.example/returns
updated: 2025-08-02
---
# Returns

## Non-living items

Pots and tools can be returned within 30 days of delivery.

## Live plants

Live plants cannot be returned; the arrival guarantee covers them.
"""

HOURS = "Support answers Monday to Friday, 8:00 to 17:00 Pacific Time.\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def chroma_ids(kb: KnowledgeBase) -> set[str]:
    return {c.chunk_id for c in kb.index.open_store().load_all()}


def test_first_sync_adds_every_file_with_its_chunks(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    write(docs, "returns.md", RETURNS)
    write(docs, "team/hours.txt", HOURS)
    kb = make_kb(docs)
    report = kb.sync()
    assert sorted(report.added) == ["returns.md", "team/hours.txt"]
    assert report.chunks_added == report.chunks_total == 3
    hit = kb.search("Can I send back a pot I bought?")[0]
    assert hit.source.path == "returns.md"
    assert hit.source.heading == "Non-living items"
    assert hit.source.url == "https://shop.example/returns"
    assert hit.source.updated == "2025-08-02"
    assert hit.chunk_id.startswith("returns.md#")


def test_second_sync_with_no_changes_embeds_nothing(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    write(docs, "returns.md", RETURNS)
    kb = make_kb(docs)
    kb.sync()
    again = kb.sync()
    assert (again.added, again.updated, again.removed, again.embedded) == ([], [], [], 0)
    assert again.unchanged == 1
    assert not again.changed


def test_restart_reuses_the_index_and_can_search_before_syncing(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    write(docs, "returns.md", RETURNS)
    make_kb(docs).sync()
    restarted = make_kb(docs)
    assert restarted.search("return a pot")[0].source.path == "returns.md"
    report = restarted.sync()
    assert report.unchanged == 1 and report.embedded == 0 and not report.changed


def test_edited_file_is_updated_and_its_old_text_disappears(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    path = write(docs, "returns.md", RETURNS)
    kb = make_kb(docs)
    kb.sync()
    old_ids = chroma_ids(kb)
    path.write_text(RETURNS.replace("within 30 days", "within 60 days"), encoding="utf-8")
    report = kb.sync()
    assert report.updated == ["returns.md"] and report.added == [] and report.removed == []
    texts = " ".join(h.text for h in kb.search("how many days to return pots", k=5))
    assert "60 days" in texts and "30 days" not in texts
    assert not (old_ids & chroma_ids(kb))  # the previous version's vectors are gone
    assert report.embedded == 1  # the unchanged "Live plants" chunk reused its stored vector


def test_shrunk_file_loses_its_extra_chunks(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    path = write(docs, "returns.md", RETURNS)
    kb = make_kb(docs)
    kb.sync()
    path.write_text("# Returns\n\nEverything can be returned within 14 days.\n", encoding="utf-8")
    report = kb.sync()
    assert report.chunks_removed == 2 and report.chunks_total == 1
    assert len(chroma_ids(kb)) == 1
    assert all("arrival guarantee" not in h.text for h in kb.search("live plants returned"))


def test_deleted_file_is_removed_from_search(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    write(docs, "returns.md", RETURNS)
    hours = write(docs, "hours.txt", HOURS)
    kb = make_kb(docs)
    kb.sync()
    hours.unlink()
    report = kb.sync()
    assert report.removed == ["hours.txt"]
    assert all(h.source.path != "hours.txt" for h in kb.search("support opening hours Pacific Time"))
    assert all("hours.txt" not in cid for cid in chroma_ids(kb))


def test_corrupt_file_is_skipped_with_one_warning_and_the_rest_index(
    docs: Path, make_kb: Callable[..., KnowledgeBase], caplog: pytest.LogCaptureFixture
) -> None:
    write(docs, "returns.md", RETURNS)
    (docs / "terms.pdf").write_bytes(b"%PDF-1.7\n this is not really a pdf")
    (docs / "latin1.txt").write_bytes("Gr\u00fc\u00dfe".encode("latin-1"))
    kb = make_kb(docs)
    with caplog.at_level(logging.WARNING, logger="bot.indexing"):
        report = kb.sync()
        kb.sync()
    assert report.added == ["returns.md"]
    assert sorted(report.skipped) == ["latin1.txt", "terms.pdf"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if "terms.pdf" in w]) == 1  # once, not on every sync
    assert len([w for w in warnings if "latin1.txt" in w and "UTF-8" in w]) == 1


def test_oversized_and_unsupported_files_are_skipped_with_a_reason(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    write(docs, "returns.md", RETURNS)
    write(docs, "huge.md", "word " * 500)
    (docs / "catalogue.docx").write_bytes(b"PK\x03\x04")
    (docs / ".hidden.md").write_text("secret draft", encoding="utf-8")
    write(docs, "returns.md~", "editor backup")
    report = make_kb(docs, **{"knowledge.max_file_bytes": 2000}).sync()
    assert report.added == ["returns.md"]
    assert sorted(report.skipped) == ["catalogue.docx", "huge.md"]
    assert "max_file_bytes" in report.reasons["huge.md"]
    assert "unsupported" in report.reasons["catalogue.docx"]


def test_a_good_file_that_becomes_corrupt_keeps_serving_its_last_version(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    path = write(docs, "returns.md", RETURNS)
    kb = make_kb(docs)
    kb.sync()
    path.write_bytes(b"\xff\xfe broken save \x00\x00")
    report = kb.sync()
    assert report.skipped == ["returns.md"] and report.removed == []
    assert kb.search("return pots within 30 days")[0].source.path == "returns.md"
    path.write_text(RETURNS.replace("30 days", "45 days"), encoding="utf-8")
    assert kb.sync().updated == ["returns.md"]  # fixed file is picked up again


def test_every_format_in_one_folder_is_indexed(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    write(docs, "returns.md", RETURNS)
    write(docs, "hours.txt", HOURS)
    write(docs, "gifts.html", "<html><head><title>Gift cards</title></head><body><h2>Expiry</h2>"
          "<p>Gift cards never expire.</p></body></html>")
    (docs / "wholesale.pdf").write_bytes(make_pdf([["The minimum wholesale order is $500."]], title="Wholesale"))
    kb = make_kb(docs)
    assert len(kb.sync().added) == 4
    assert kb.search("minimum wholesale order amount")[0].source.title == "Wholesale"
    gift = kb.search("do gift cards expire")[0]
    assert (gift.source.title, gift.source.heading) == ("Gift cards", "Expiry")


def test_chunk_ids_are_stable_so_a_full_rebuild_is_an_upsert(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    write(docs, "returns.md", RETURNS)
    kb = make_kb(docs)
    kb.sync()
    before = chroma_ids(kb)
    report = kb.sync(full=True)
    assert chroma_ids(kb) == before
    assert report.embedded == 2  # --full really re-embeds


def test_vectors_missing_from_chroma_are_rebuilt_even_if_the_manifest_says_indexed(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    write(docs, "returns.md", RETURNS)
    kb = make_kb(docs)
    kb.sync()
    manifest = json.loads(kb.index.manifest_path.read_text())
    assert manifest["files"]["returns.md"]["chunks"] == 2
    kb.index.open_store().delete([next(iter(chroma_ids(kb)))])  # e.g. a crash or a wiped server
    report = kb.sync()
    assert report.updated == [] and report.embedded == 1  # only the lost chunk is re-embedded
    assert len(chroma_ids(kb)) == 2


def test_changing_chunk_settings_rebuilds_the_collection(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    write(docs, "returns.md", RETURNS)
    make_kb(docs).sync()
    report = make_kb(docs, **{"knowledge.chunk_size": 150, "knowledge.chunk_overlap": 20}).sync()
    assert report.added == ["returns.md"] and report.embedded == report.chunks_total


def test_writes_are_split_into_chroma_sized_batches(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    write(docs, "returns.md", RETURNS)
    write(docs, "hours.txt", HOURS)
    kb = make_kb(docs)
    store = kb.index.open_store()
    store.max_batch = 2
    calls: list[int] = []
    original = store._collection.upsert

    def spy(**kwargs: object) -> None:
        calls.append(len(kwargs["ids"]))  # type: ignore[arg-type]
        original(**kwargs)

    store._collection.upsert = spy
    kb.sync()
    assert calls == [2, 1] and len(chroma_ids(kb)) == 3


def test_missing_knowledge_folder_is_a_config_error(tmp_path: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    with pytest.raises(ConfigError, match="knowledge.dir"):
        make_kb(tmp_path / "nope").sync()


def test_invalid_collection_name_is_a_config_error(docs: Path, make_kb: Callable[..., KnowledgeBase]) -> None:
    with pytest.raises(ConfigError, match="knowledge.collection"):
        make_kb(docs, **{"knowledge.collection": "x"}).sync()
