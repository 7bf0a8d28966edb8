"""How a process loads its domain model: before serving (Slack, Rasa, eval) or behind the
console's prompt, and never fatally."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bot.errors import AnswererUnavailable
from bot.factory import Runtime


class SlowModel:
    def __init__(self, fail: bool = False) -> None:
        self.release = threading.Event()
        self.loaded = threading.Event()
        self.fail = fail

    def warm_up(self) -> None:
        self.release.wait(timeout=10)
        if self.fail:
            raise AnswererUnavailable("inference server at http://inference:8000/v1 refused the connection")
        self.loaded.set()


def runtime_with(domain: Any) -> Runtime:
    return Runtime(None, None, None, None, None, domain)  # type: ignore[arg-type]


def test_the_console_prompt_does_not_wait_for_the_model() -> None:
    model = SlowModel()
    runtime_with(model).warm_up_domain(background=True)  # returns while the model still loads
    assert not model.loaded.is_set()
    model.release.set()
    assert model.loaded.wait(timeout=10)


def test_a_model_that_cannot_load_yet_is_a_warning_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    model = SlowModel(fail=True)
    model.release.set()
    with caplog.at_level("WARNING", logger="bot.factory"):
        runtime_with(model).warm_up_domain()
    assert "domain model not ready at start" in caplog.text and "refused the connection" in caplog.text


def test_closing_waits_for_a_model_still_loading_behind_the_prompt() -> None:
    """Quitting the console mid-load used to end the process while torch still ran in the loading
    thread, and the interpreter's shutdown aborted it (exit -6)."""
    model = SlowModel()
    runtime = runtime_with(model)
    runtime.warm_up_domain(background=True)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (runtime.close(), closed.set()))
    closer.start()
    assert not closed.wait(timeout=0.3), "close() returned while the model was still loading"
    model.release.set()
    assert closed.wait(timeout=10) and model.loaded.is_set()
    closer.join()
