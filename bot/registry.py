"""Versioned artifacts (LoRA adapters, routers) with atomic promote and rollback.

Layout under a root such as `<state_dir>/adapters`:
    versions/v0001/...      one folder per version, with metadata.json
    current.json            {"current": "v0003", "history": ["v0001", "v0003"]}
A version folder is staged under a hidden name and renamed into place, and `current.json` is
replaced atomically, so a crashed or killed job never changes what is served. Running
processes poll `current_version()` (one small file read) to hot-reload.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.atomic import atomic_write_json
from bot.errors import BotError

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

POINTER = "current.json"
METADATA = "metadata.json"


class RegistryError(BotError):
    pass


@dataclass(frozen=True)
class VersionInfo:
    version: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)


class ArtifactRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.versions_dir = root / "versions"

    # --- reading ----------------------------------------------------------------------------

    def _pointer(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / POINTER).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"current": None, "history": []}
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("%s is unreadable (%s); serving no promoted version", self.root / POINTER, exc)
            return {"current": None, "history": []}
        return data if isinstance(data, dict) else {"current": None, "history": []}

    def current_version(self) -> str | None:
        version = self._pointer().get("current")
        return version if isinstance(version, str) and (self.versions_dir / version).is_dir() else None

    def current(self) -> VersionInfo | None:
        version = self.current_version()
        return self.get(version) if version else None

    def get(self, version: str) -> VersionInfo:
        path = self.versions_dir / version
        if not path.is_dir():
            raise RegistryError(f"no version {version!r} under {self.versions_dir}")
        try:
            metadata = json.loads((path / METADATA).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            metadata = {}
        return VersionInfo(version=version, path=path, metadata=metadata)

    def list(self) -> list[VersionInfo]:
        if not self.versions_dir.is_dir():
            return []
        names = sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        return [self.get(name) for name in names]

    # --- writing ----------------------------------------------------------------------------

    def add(self, source_dir: Path, metadata: dict[str, Any]) -> VersionInfo:
        """Copy a finished artifact folder in as the next version (not promoted)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.versions_dir))
        try:
            shutil.copytree(source_dir, staging, dirs_exist_ok=True)
            meta = {"created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **metadata}
            atomic_write_json(staging / METADATA, meta)
            while True:
                existing = [p.name for p in self.versions_dir.iterdir() if p.name.startswith("v")]
                number = 1 + max((int(n[1:]) for n in existing if n[1:].isdigit()), default=0)
                version = f"v{number:04d}"
                try:
                    os.rename(staging, self.versions_dir / version)  # fails if taken: retry
                    break
                except OSError:
                    if not (self.versions_dir / version).exists():
                        raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        log.info("registered %s under %s", version, self.root)
        return self.get(version)

    def promote(self, version: str) -> None:
        """Serve `version`, unless its metadata says it must never be served (`blocked`)."""
        info = self.get(version)  # must exist
        blocked = info.metadata.get("blocked")
        if blocked:
            raise RegistryError(f"{version} cannot be promoted: {blocked}")
        pointer = self._pointer()
        history = [v for v in pointer.get("history", []) if isinstance(v, str)]
        if pointer.get("current") == version:
            return
        history.append(version)
        atomic_write_json(self.root / POINTER, {"current": version, "history": history})
        log.info("promoted %s under %s", version, self.root)

    def rollback(self) -> str | None:
        """Serve the version promoted before the current one; None means the base (no adapter)."""
        pointer = self._pointer()
        history = [v for v in pointer.get("history", []) if isinstance(v, str)]
        if not history:
            raise RegistryError("nothing to roll back: no version was ever promoted")
        history.pop()
        while history and not (self.versions_dir / history[-1]).is_dir():
            history.pop()
        previous = history[-1] if history else None
        atomic_write_json(self.root / POINTER, {"current": previous, "history": history})
        log.info("rolled back under %s to %s", self.root, previous or "no version")
        return previous


# The registries under the state dir; their folder names are spelled here only.
ADAPTERS_DIR = "adapters"
ROUTERS_DIR = "routers"


def adapter_registry(settings: Settings) -> ArtifactRegistry:
    """LoRA adapters of the domain model, written by training, served by the domain answerer."""
    return ArtifactRegistry(settings.state_dir / ADAPTERS_DIR)


def router_registry(settings: Settings) -> ArtifactRegistry:
    """Trained routers, written by `router train` (and each training run), served by the router."""
    return ArtifactRegistry(settings.state_dir / ROUTERS_DIR)
