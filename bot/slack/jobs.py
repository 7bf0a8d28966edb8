"""Long staff jobs (`/supportbot train`, `reindex`) run in the background, one of each at a time.

Slack wants an answer to a command within 3 seconds; a training run takes minutes. The job
runs on its own thread and reports through a callback; a second request for the same job
while one runs is refused instead of queued, so nobody starts three training runs by impatience.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningJob:
    name: str
    started_by: str
    started_at: datetime


class BackgroundJobs:
    def __init__(self) -> None:
        self._running: dict[str, RunningJob] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def running(self, name: str) -> RunningJob | None:
        with self._lock:
            return self._running.get(name)

    def start(
        self,
        name: str,
        started_by: str,
        work: Callable[[], str],
        report: Callable[[str], None],
    ) -> bool:
        """Run `work` on a thread and `report` its text (or a failure notice); False if already running."""
        with self._lock:
            if name in self._running:
                return False
            self._running[name] = RunningJob(name, started_by, datetime.now(UTC))

        def run() -> None:
            try:
                outcome = work()
            except Exception as exc:  # a staff job failing must say so, and keep the bot serving
                log.exception("background job %s failed", name)
                outcome = f"The {name} run failed ({type(exc).__name__}: {exc}). The bot keeps serving as before; see the logs."
            finally:
                with self._lock:
                    self._running.pop(name, None)
            try:
                report(outcome)
            except Exception:
                log.exception("could not report the outcome of %s: %s", name, outcome)

        thread = threading.Thread(target=run, name=f"supportbot-{name}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return True

    def wait(self, timeout_s: float | None = None) -> None:
        """Wait for running jobs (tests, and a graceful shutdown that lets a run finish)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)
