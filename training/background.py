"""The seed adapter, trained in the background the first time the bot serves from a state dir.

A fresh install would otherwise serve the bare base model until someone runs `supportbot
train run`, and the newcomer's first plant question gets the base model's invention rather
than the fine-tuned expert the README promises. Training takes minutes on a CPU, so the bot
answers at once (base model + expert memory) while a child process trains, evaluates and gates
the seed adapter; the domain answerer's registry watcher swaps it in when it is promoted.

A child process, not a thread: it runs at the lowest CPU priority (nice 19), so customers'
answers keep the cores they need; its torch threads and memory never touch the serving
process; and a crash in training cannot take the bot down. Its settings arrive on stdin as
JSON, so nothing (not a database password) is written to disk or shown in `ps`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable

from bot.config import SECRET_ENV, Secrets, Settings
from bot.registry import adapter_registry
from bot.training_record import TrainingRun, last_training_run

log = logging.getLogger(__name__)

NICENESS = 19


def needs_seed_adapter(settings: Settings) -> bool:
    """True on a state dir where no adapter is served and training never ran.

    A run that ran and was not promoted (or failed) is not retried at every start: its result
    is in `supportbot train status`, and `supportbot train run` tries again."""
    if not settings.training.seed_adapter_at_start:
        return False
    return adapter_registry(settings).current_version() is None and last_training_run(settings) is None


class SeedAdapterJob:
    """One background seed-training process and the thread that reports how it ended."""

    def __init__(self, settings: Settings, on_promoted: Callable[[], object] | None = None) -> None:
        self.settings = settings
        self.on_promoted = on_promoted
        self.process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.done = threading.Event()
        self.outcome: TrainingRun | None = None

    def start(self) -> bool:
        """Start the child unless this state dir has an adapter or a training record already."""
        if not needs_seed_adapter(self.settings):
            return False
        payload = json.dumps(self.settings.model_dump(mode="json")).encode("utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "training.background"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_lowest_priority if os.name == "posix" else None,
            cwd=os.getcwd(),
        )
        assert self.process.stdin is not None
        self.process.stdin.write(payload)
        self.process.stdin.close()
        log.info("no domain adapter trained yet: training the seed adapter in the background (pid %d, "
                 "nice %d); the base model answers until it is promoted", self.process.pid, NICENESS)
        self._thread = threading.Thread(target=self._wait, name="seed-adapter-training", daemon=True)
        self._thread.start()
        return True

    def _wait(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        tail: deque[str] = deque(maxlen=5)
        for raw in self.process.stderr:  # the child's log, kept for `-v` and for a failure
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
                log.debug("seed training: %s", line)
        code = self.process.wait()
        self.outcome = run = last_training_run(self.settings)
        if run is not None and run.status == "promoted":
            log.info("seed adapter %s promoted: %s; the domain model serves it from the next answer",
                     run.version, run.summary)
            if self.on_promoted is not None:
                try:
                    self.on_promoted()
                except Exception:  # the registry watcher swaps it within domain.adapter_poll_s anyway
                    log.exception("could not swap in the seed adapter at once")
        elif run is not None:
            log.warning("seed adapter not served (%s): %s", run.status, run.summary)
        elif code < 0:
            log.warning("seed adapter training stopped (signal %d); the next start resumes it", -code)
        else:
            log.warning("seed adapter training exited with %d and no result; the base model keeps "
                        "answering. Last lines: %s", code, " | ".join(tail) or "(none)")
        self.done.set()

    def close(self) -> None:
        """Stop the child with the bot; its checkpoints let the next start resume it."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._thread is not None:
            self._thread.join(timeout=10)


def _lowest_priority() -> None:
    os.nice(NICENESS)


def main() -> int:
    """Child entry: settings as JSON on stdin, then one training run."""
    from training.run import run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = json.loads(sys.stdin.read())
    secrets = Secrets(**{name: os.environ[var] for name, var in SECRET_ENV.items() if os.environ.get(var)})
    settings = Settings(**data, secrets=secrets)
    outcome = run_training(settings, force=True)
    log.info("seed adapter training: %s", outcome.summary)
    return 0 if outcome.status in ("promoted", "rejected", "busy") else 1


if __name__ == "__main__":
    raise SystemExit(main())
