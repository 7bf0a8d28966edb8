"""Watches knowledge/ and hands each debounced batch of changed paths to the indexer.

Ops edit policies while the bot runs; a change should be searchable within seconds, without
a restart or a full rebuild. watchfiles groups an editor's burst of writes (temp file,
rename, chmod) into one batch, so a save is indexed once, from its final bytes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 10.0
_STEP_MS = 100  # quiet time after the last change before a batch is handed over


class KnowledgeWatcher:
    def __init__(self, directory: Path, on_change: Callable[[set[Path]], None], debounce_ms: int) -> None:
        self.directory = directory
        self.on_change = on_change
        self.debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the background thread and return once the OS is delivering events to it."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="knowledge-watcher", daemon=True)
        self._thread.start()
        if not self._ready.wait(READY_TIMEOUT_S):
            log.warning("the knowledge watcher did not start within %.0fs; edits may be picked up late", READY_TIMEOUT_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=READY_TIMEOUT_S)
            self._thread = None

    def _run(self) -> None:
        from watchfiles import watch

        log.info("watching %s for knowledge changes", self.directory)
        try:
            for changes in watch(
                self.directory,
                debounce=self.debounce_ms,
                step=_STEP_MS,
                stop_event=self._stop,
                rust_timeout=200,
                yield_on_timeout=True,  # the first (empty) yield tells us the watch is active
                raise_interrupt=False,
            ):
                self._ready.set()
                if not changes or self._stop.is_set():
                    continue
                paths = {Path(path) for _, path in changes}
                try:
                    self.on_change(paths)
                except Exception:  # a bad batch must not end live updates for the bot's lifetime
                    log.exception("re-indexing after a knowledge change failed; will retry on the next change")
        except Exception:
            log.exception("the knowledge watcher stopped; restart the bot to resume live re-indexing")
        finally:
            self._ready.set()
