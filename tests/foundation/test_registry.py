"""Promote and rollback are atomic; a crash while adding a version changes nothing served."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest

from bot.registry import ArtifactRegistry, RegistryError


def make_artifact(tmp_path: Path, name: str) -> Path:
    src = tmp_path / name
    src.mkdir()
    (src / "weights.bin").write_bytes(name.encode())
    return src


def test_promote_and_rollback(tmp_path: Path) -> None:
    reg = ArtifactRegistry(tmp_path / "adapters")
    assert reg.current() is None
    v1 = reg.add(make_artifact(tmp_path, "a"), {"metrics": {"f1": 0.3}})
    v2 = reg.add(make_artifact(tmp_path, "b"), {"metrics": {"f1": 0.4}})
    assert [v.version for v in reg.list()] == ["v0001", "v0002"]
    reg.promote(v1.version)
    reg.promote(v2.version)
    current = reg.current()
    assert current is not None and (current.path / "weights.bin").read_bytes() == b"b"
    assert current.metadata["metrics"] == {"f1": 0.4}
    assert reg.rollback() == "v0001"
    assert reg.current_version() == "v0001"
    assert reg.rollback() is None  # back to the base model
    with pytest.raises(RegistryError):
        reg.rollback()


def test_crash_while_adding_leaves_served_version(tmp_path: Path) -> None:
    reg = ArtifactRegistry(tmp_path / "adapters")
    reg.promote(reg.add(make_artifact(tmp_path, "good"), {}).version)
    with mock.patch("bot.registry.os.rename", side_effect=KeyboardInterrupt), pytest.raises(KeyboardInterrupt):
        reg.add(make_artifact(tmp_path, "half"), {})
    assert reg.current_version() == "v0001"
    assert [v.version for v in reg.list()] == ["v0001"]
    assert not any(p.name.startswith(".staging") for p in reg.versions_dir.iterdir())


def test_crash_while_promoting_keeps_pointer(tmp_path: Path) -> None:
    reg = ArtifactRegistry(tmp_path / "adapters")
    v1 = reg.add(make_artifact(tmp_path, "a"), {})
    v2 = reg.add(make_artifact(tmp_path, "b"), {})
    reg.promote(v1.version)
    with mock.patch("bot.atomic.os.replace", side_effect=OSError("disk full")), pytest.raises(OSError):
        reg.promote(v2.version)
    assert reg.current_version() == "v0001"


def test_corrupt_pointer_serves_no_version_instead_of_crashing(tmp_path: Path) -> None:
    reg = ArtifactRegistry(tmp_path / "adapters")
    reg.promote(reg.add(make_artifact(tmp_path, "a"), {}).version)
    (tmp_path / "adapters" / "current.json").write_text("{not json")
    assert reg.current() is None
