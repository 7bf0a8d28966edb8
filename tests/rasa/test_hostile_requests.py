"""A hostile caller meets the action server: it needs the token, gets a 4xx per fault, never a 500.

The server here runs with SUPPORTBOT_RASA_TOKEN set (the tests in test_action_server.py run it
without one), on a real socket, with the default body limit.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bot.config import Settings, load_settings
from bot.errors import ConfigError
from bot.rasa.actions import THANKS_HELPFUL
from bot.rasa.server import exposure_warning
from tests.rasa.conftest import RasaHarness, webhook_payload

pytestmark = pytest.mark.filterwarnings("ignore:Your versions of rasa and rasa_sdk might not be compatible")

REPO = Path(__file__).resolve().parents[2]
TOKEN = "rr-actions-5b1f0c7e9d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WATERING = "How often should I water a Masdevallia orchid?"
ONE_MIB = 1_048_576


@pytest.fixture
def rasa_settings(settings_factory: Callable[..., Settings]) -> Settings:
    """The shared fixture's settings, plus the token (so `rasa_server` requires it)."""
    return settings_factory(env={"SUPPORTBOT_RASA_TOKEN": TOKEN}, **{"router.fallback_order": ["escalate"]})


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything the server side logs while a test talks to it, down to DEBUG.

    The test's own HTTP client (httpx) logs the URLs it requests, query token included; that
    is this test's client, not the server, so it is left out.
    """
    with caplog.at_level(logging.DEBUG):
        for client_logger in ("httpx", "httpcore"):
            caplog.set_level(logging.WARNING, logger=client_logger)
        yield caplog


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def answer_for(harness: RasaHarness, sender_id: str) -> int:
    resp = harness.post(webhook_payload("action_support_answer", sender_id, WATERING), headers=AUTH)
    assert resp.status_code == 200
    turn = harness.store.last_turn_for("rasa", sender_id)
    assert turn is not None
    return turn.id


# --- bind address -------------------------------------------------------------------------------


def test_the_action_server_listens_only_on_this_machine_by_default() -> None:
    assert Settings().rasa.host == "127.0.0.1"
    assert load_settings(REPO / "config.toml", env={}).rasa.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "token_set", "warned"),
    [
        ("0.0.0.0", False, True),
        ("10.1.2.3", False, True),
        ("actions.internal", False, True),
        ("0.0.0.0", True, False),
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("localhost", False, False),
    ],
)
def test_listening_beyond_loopback_without_a_token_is_warned_about(host: str, token_set: bool, warned: bool) -> None:
    warning = exposure_warning(host, token_set)

    assert (warning is not None) == warned
    if warning:
        assert "SUPPORTBOT_RASA_TOKEN" in warning and "any sender_id" in warning


# --- token --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({}, {}),
        ({"Authorization": "Bearer rr-actions-guess"}, {}),
        ({}, {"token": "rr-actions-guess"}),
        ({"Authorization": f"Basic {TOKEN}"}, {}),
        ({"Authorization": "Bearer"}, {}),
        ({}, {"token": "é-not-ascii"}),
    ],
    ids=["none", "wrong-bearer", "wrong-query", "not-bearer-scheme", "empty-bearer", "non-ascii"],
)
def test_a_call_without_the_right_token_gets_401_and_cannot_vote_for_anyone(
    rasa_server: RasaHarness, server_log: pytest.LogCaptureFixture, headers: dict[str, str], params: dict[str, str]
) -> None:
    victim_turn = answer_for(rasa_server, "victim")
    server_log.clear()

    resp = rasa_server.post(
        webhook_payload("action_support_feedback", "victim", "/deny", intent="deny"), headers=headers, params=params
    )

    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert resp.json()["error"].startswith("unauthorized")
    assert rasa_server.store.feedback_for(victim_turn) == {}
    (line,) = problems(server_log)
    assert "status=401" in line.getMessage() and line.exc_info is None
    assert TOKEN not in server_log.text and "rr-actions-guess" not in server_log.text


def test_a_garbage_body_without_the_token_gets_401_before_it_is_parsed(rasa_server: RasaHarness) -> None:
    resp = rasa_server.client.post(f"{rasa_server.url}/webhook", content=b"\xff{not json")

    assert resp.status_code == 401


@pytest.mark.parametrize("form", ["header", "query"])
def test_the_right_token_as_header_or_query_parameter_is_answered(
    rasa_server: RasaHarness, server_log: pytest.LogCaptureFixture, form: str
) -> None:
    kwargs: dict[str, Any] = {"headers": AUTH} if form == "header" else {"params": {"token": TOKEN}}
    turn = answer_for(rasa_server, "u1")

    resp = rasa_server.post(webhook_payload("action_support_feedback", "u1", "/affirm", intent="affirm"), **kwargs)

    assert resp.status_code == 200
    assert resp.json()["responses"][0]["text"] == THANKS_HELPFUL
    assert rasa_server.store.feedback_for(turn) == {"u1": 1}
    assert TOKEN not in server_log.text


def test_health_is_open_to_probes_but_the_action_list_needs_the_token(rasa_server: RasaHarness) -> None:
    assert rasa_server.client.get(f"{rasa_server.url}/health").json() == {"status": "ok"}
    assert rasa_server.client.get(f"{rasa_server.url}/actions").status_code == 401
    assert rasa_server.client.get(f"{rasa_server.url}/actions", headers=AUTH).status_code == 200


# --- malformed requests -------------------------------------------------------------------------


def _call(**changes: Any) -> bytes:
    payload = webhook_payload("action_support_answer", "u2", WATERING)
    payload.update(changes)
    return json.dumps(payload).encode()


def _tracker(**changes: Any) -> bytes:
    payload = webhook_payload("action_support_feedback", "u2", "/affirm", intent="affirm")
    payload["tracker"].update(changes)
    return json.dumps(payload).encode()


MALFORMED = [
    # (id, method, path, body, extra headers, status, part of the error)
    ("get-webhook", "GET", "/webhook", b"", {}, 405, "not allowed"),
    ("put-webhook", "PUT", "/webhook", b"{}", {}, 405, "not allowed"),
    ("unknown-path", "GET", "/admin", b"", {}, 404, "not found"),
    ("empty-body", "POST", "/webhook", b"", {}, 400, "not JSON"),
    ("invalid-utf8", "POST", "/webhook", b'{"next_action": "action_support_answer\xff"}', {}, 400, "not UTF-8"),
    ("json-string", "POST", "/webhook", b'"action_support_answer"', {}, 400, "expected a JSON object"),
    ("json-null", "POST", "/webhook", b"null", {}, 400, "expected a JSON object"),
    ("no-next-action", "POST", "/webhook", json.dumps({"tracker": {"sender_id": "u2"}}).encode(), {}, 400,
     "'next_action'"),
    ("next-action-list", "POST", "/webhook", _call(next_action=["action_support_answer"]), {}, 400, "'next_action'"),
    ("tracker-string", "POST", "/webhook", _call(tracker="u2"), {}, 400, "'tracker' must be an object"),
    ("sender-id-number", "POST", "/webhook", _tracker(sender_id=42), {}, 400, "tracker.sender_id"),
    ("sender-id-lone-surrogate", "POST", "/webhook", _tracker(sender_id="\ud800"), {}, 400, "tracker.sender_id"),
    ("text-lone-surrogate", "POST", "/webhook",
     _call(tracker={"sender_id": "u2", "latest_message": {"text": "water \udfff"}}), {}, 400, "latest_message.text"),
    ("events-object", "POST", "/webhook", _tracker(events={"event": "user"}), {}, 400, "tracker.events"),
    ("version-number", "POST", "/webhook", _call(version=3.6), {}, 400, "'version'"),
    ("nested-too-deep", "POST", "/webhook", b"[" * 100_000 + b"]" * 100_000, {}, 400, "not JSON"),
    ("integer-too-long", "POST", "/webhook", b'{"next_action": 1' + b"0" * 5000 + b"}", {}, 400, "not JSON"),
    ("gzip-body", "POST", "/webhook", b"\x1f\x8b\x08\x00", {"Content-Encoding": "gzip"}, 400, "Content-Encoding"),
    ("not-deflate", "POST", "/webhook", b"{}", {"Content-Encoding": "deflate"}, 400, "not deflate data"),
    ("truncated-deflate", "POST", "/webhook", zlib.compress(_call())[:-40], {"Content-Encoding": "deflate"}, 400,
     "truncated"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error_part"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_request_gets_a_4xx_json_error_and_one_log_line_without_traceback(
    rasa_server: RasaHarness,
    server_log: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error_part: str,
) -> None:
    resp = rasa_server.client.request(
        method, f"{rasa_server.url}{path}", content=body, headers={"Content-Type": "application/json", **AUTH, **headers}
    )

    assert resp.status_code == status
    assert error_part in resp.json()["error"]
    assert rasa_server.store.count_turns() == 0
    (line,) = problems(server_log)
    assert f"status={status}" in line.getMessage()
    assert line.exc_info is None and "Traceback" not in server_log.text
    after = rasa_server.post(webhook_payload("action_support_answer", "u3", WATERING), headers=AUTH)
    assert after.status_code == 200


def test_a_rasa_call_near_the_body_limit_is_still_answered(rasa_server: RasaHarness) -> None:
    payload = webhook_payload("action_support_answer", "u4", WATERING)
    payload["tracker"]["slots"]["order_notes"] = "x" * (ONE_MIB - 20_000)

    resp = rasa_server.post(payload, headers=AUTH)

    assert len(json.dumps(payload)) < ONE_MIB
    assert resp.status_code == 200 and rasa_server.store.count_turns() == 1


def test_a_body_over_the_limit_gets_413_and_is_not_logged(
    rasa_server: RasaHarness, caplog: pytest.LogCaptureFixture
) -> None:
    payload = webhook_payload("action_support_answer", "u5", "MARKER-masdevallia-notes " * 50_000)
    body = json.dumps(payload).encode()
    assert len(body) > ONE_MIB

    with caplog.at_level(logging.INFO):
        resp = rasa_server.client.post(
            f"{rasa_server.url}/webhook", content=body, headers={"Content-Type": "application/json", **AUTH}
        )

    assert resp.status_code == 413
    assert "error" in resp.json()
    assert rasa_server.store.count_turns() == 0
    assert "MARKER-masdevallia" not in caplog.text
    assert len(problems(caplog)) == 1 and "Traceback" not in caplog.text


def test_an_oversized_content_length_is_refused_without_waiting_for_the_body(rasa_server: RasaHarness) -> None:
    address = urlsplit(rasa_server.url)
    assert address.hostname is not None and address.port is not None
    with socket.create_connection((address.hostname, address.port), timeout=10) as conn:
        conn.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: actions\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {50 * ONE_MIB}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = conn.recv(4096)
            assert chunk, f"connection closed without a reply: {reply!r}"
            reply += chunk

    assert reply.startswith(b"HTTP/1.1 413 ")


def test_a_small_deflate_body_that_inflates_past_the_limit_gets_413(rasa_server: RasaHarness) -> None:
    bomb = zlib.compress(b" " * (4 * ONE_MIB))
    assert len(bomb) < 10_000

    resp = rasa_server.client.post(
        f"{rasa_server.url}/webhook",
        content=bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "deflate", **AUTH},
    )

    assert resp.status_code == 413
    assert "decompressed" in resp.json()["error"]


# --- configuration ------------------------------------------------------------------------------


def test_config_check_shows_the_token_as_set_but_never_its_value(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("", encoding="utf-8")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO), "SUPPORTBOT_RASA_TOKEN": TOKEN}
    outputs = []
    for extra in (["--json"], []):
        result = subprocess.run(
            [sys.executable, "-m", "bot.cli.main", "--config", str(config), "config", "check", *extra],
            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)

    as_json, as_text = outputs
    assert '"SUPPORTBOT_RASA_TOKEN": "***"' in as_json
    assert 'SUPPORTBOT_RASA_TOKEN = "***"' in as_text
    assert TOKEN not in as_json and TOKEN not in as_text


def test_a_token_written_into_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[rasa]\ntoken = "{TOKEN}"\n', encoding="utf-8")

    with pytest.raises(ConfigError) as refused:
        load_settings(config, env={})

    assert "rasa.token" in str(refused.value) and "SUPPORTBOT_RASA_TOKEN" in str(refused.value)
    assert TOKEN not in str(refused.value)
