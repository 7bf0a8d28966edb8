"""Folders written for models and checkpoints appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.atomic import atomic_directory


def test_a_crash_while_writing_leaves_the_old_folder_and_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "adapter"
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "weights").write_text("half of v2")
        raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]
    with atomic_directory(target) as tmp:
        (tmp / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"


def test_a_copy_finished_first_elsewhere_is_kept_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_directory(target, replace_existing=False) as tmp:
        (tmp / "config.json").write_text("ours")
        target.mkdir()
        (target / "config.json").write_text("theirs")  # another process won the race
    assert (target / "config.json").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
