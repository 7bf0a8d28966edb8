"""Forgetting a person zeroes what hnswlib writes from freed memory into the unused slots of its
segment files, and leaves every used slot as it was (the index still answers the same)."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from bot.indexing.hnsw_files import clear_unused_slots

LEFTOVER = b"zebra-quokka-7781 asked about an orchid"
QUERY = [0.5] * 8


def _nearest_in_fresh_process(path: Path) -> list[str]:
    """A new process reads the files from disk (in this process Chroma serves its memory copy)."""
    code = ("import chromadb, sys; c = chromadb.PersistentClient(path=sys.argv[1]).get_collection('flushed'); "
            f"print(','.join(c.query(query_embeddings=[{QUERY}], n_results=5)['ids'][0]))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return out.stdout.strip().split(",")


def _element_count(segment: Path) -> int:
    return int.from_bytes((segment / "header.bin").read_bytes()[20:28], "little")


def _plant_leftover(path: Path, offset_from_end: int) -> None:
    """What the allocator may leave: a freed document's text, in a slot no element uses."""
    with path.open("r+b") as handle:
        handle.seek(path.stat().st_size - offset_from_end)
        handle.write(LEFTOVER[: min(len(LEFTOVER), offset_from_end)])


def test_unused_slots_are_zeroed_and_used_ones_kept(tmp_path: Path) -> None:
    import chromadb

    rng = random.Random(7)
    client = chromadb.PersistentClient(path=str(tmp_path))
    flushed = client.create_collection(
        "flushed", configuration={"hnsw": {"space": "cosine", "batch_size": 10, "sync_threshold": 10}})
    flushed.add(ids=[f"e{i}" for i in range(25)], embeddings=[[rng.random() for _ in range(8)] for _ in range(25)])
    before = flushed.query(query_embeddings=[QUERY], n_results=5)["ids"][0]
    client.create_collection("unflushed").add(ids=["a"], embeddings=[[0.1] * 8])  # no element on disk yet

    segments = {_element_count(p.parent): p.parent for p in tmp_path.glob("*/header.bin")}
    assert sorted(segments) == [0, 25], "Chroma wrote one segment with the 25 elements and one still empty"
    used = (segments[25] / "data_level0.bin").read_bytes()[:25 * 172]  # 8 floats, links and label each
    for segment in segments.values():
        _plant_leftover(segment / "data_level0.bin", 100)
        _plant_leftover(segment / "length.bin", 20)

    assert clear_unused_slots(tmp_path) == 2
    for file in tmp_path.rglob("*.bin"):
        assert LEFTOVER[:17] not in file.read_bytes(), file
    assert (segments[25] / "data_level0.bin").read_bytes()[:25 * 172] == used
    assert not any((segments[0] / "data_level0.bin").read_bytes())  # no slot used: all of it was leftovers
    assert _nearest_in_fresh_process(tmp_path) == before
    assert clear_unused_slots(tmp_path) == 0  # nothing left to clear


def test_files_in_another_layout_are_left_alone(tmp_path: Path) -> None:
    segment = tmp_path / "segment"
    segment.mkdir()
    header = (2).to_bytes(4, "little") + bytes(8) + (4).to_bytes(8, "little") + bytes(8) + (16).to_bytes(8, "little")
    (segment / "header.bin").write_bytes(header + bytes(64))
    (segment / "data_level0.bin").write_bytes(LEFTOVER[:16] * 4)
    (segment / "length.bin").write_bytes(LEFTOVER[:16])
    assert clear_unused_slots(tmp_path) == 0
    assert (segment / "data_level0.bin").read_bytes() == LEFTOVER[:16] * 4
