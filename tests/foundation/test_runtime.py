"""How a process loads its domain model: before serving (Slack, Rasa, the console, eval), and
never fatally."""

from __future__ import annotations

from typing import Any

import pytest

from bot.errors import AnswererUnavailable
from bot.factory import Runtime


class UnreachableServer:
    def warm_up(self) -> None:
        raise AnswererUnavailable("inference server at http://inference:8000/v1 refused the connection")


def runtime_with(domain: Any) -> Runtime:
    return Runtime(None, None, None, None, None, domain)  # type: ignore[arg-type]


def test_a_model_that_cannot_load_yet_is_a_warning_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="bot.factory"):
        runtime_with(UnreachableServer()).warm_up_domain()
    assert "domain model not ready at start" in caplog.text and "refused the connection" in caplog.text

