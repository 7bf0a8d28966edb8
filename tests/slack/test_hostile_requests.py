"""What a careless or hostile caller can do to the Slack endpoint: nothing that stalls or crashes it.

Every request here goes over a real socket to the production HTTP server (uvicorn + our
checks + Bolt). A rejected request gets its status code and one log line without the body;
the server keeps answering health checks and signed events meanwhile.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from bot.slack.request_checks import slack_signature
from tests.slack.conftest import SIGNING_SECRET, HarnessFactory, mention

SECRET_MARKER = "BODY-MUST-NOT-BE-LOGGED"


def signed_headers(body: bytes, content_type: str, *, timestamp: str | None = None) -> dict[str, str]:
    timestamp = timestamp or str(int(time.time()))
    signature = slack_signature(SIGNING_SECRET, timestamp, body).decode()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def post_raw(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    with httpx.Client(timeout=10) as http:
        return http.post(url, content=body, headers=headers)


def rejection_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("rejected POST")]


MALFORMED_SIGNED = [
    ("broken JSON", b'{"type": "event_callback", ', "application/json", "not valid JSON"),
    ("a JSON list", b'[1, 2, 3]', "application/json", "not an object"),
    ("invalid UTF-8", b'{"text": "\xff\xfe\xfd"}', "application/json", "not valid UTF-8"),
    ("form payload not JSON", urlencode({"payload": "{not json"}).encode(), "application/x-www-form-urlencoded",
     "'payload' is not valid JSON"),
    ("form payload a JSON string", urlencode({"payload": '"hello"'}).encode(), "application/x-www-form-urlencoded",
     "not an object"),
    ("an unknown content type", b"hello", "text/plain", "unsupported Content-Type"),
]


@pytest.mark.parametrize("case,body,content_type,reason", MALFORMED_SIGNED, ids=[c[0] for c in MALFORMED_SIGNED])
def test_malformed_signed_body_gets_400_and_one_log_line(
    slack_harness: HarnessFactory, caplog: pytest.LogCaptureFixture, case: str, body: bytes, content_type: str,
    reason: str,
) -> None:
    h = slack_harness()
    caplog.set_level(logging.DEBUG)
    response = post_raw(h.server.url, body, signed_headers(body, content_type))
    assert response.status_code == 400, case
    assert reason in response.json()["error"]
    assert len(rejection_lines(caplog)) == 1
    assert not any(r.exc_info for r in caplog.records), "a malformed request must not log a traceback"
    assert h.pipeline.asked == []


UNSIGNED = [
    ("no signature headers", {"Content-Type": "application/json"}, "missing"),
    ("a timestamp that is not a number", {"Content-Type": "application/json", "X-Slack-Request-Timestamp": "soon",
                                          "X-Slack-Signature": "v0=abc"}, "not a number"),
    ("a stale timestamp", None, "five minutes"),
    ("a wrong signature", {"Content-Type": "application/json", "X-Slack-Request-Timestamp": "<now>",
                           "X-Slack-Signature": "v0=" + "0" * 64}, "invalid signature"),
]


@pytest.mark.parametrize("case,headers,reason", UNSIGNED, ids=[c[0] for c in UNSIGNED])
def test_unsigned_request_gets_401_without_logging_its_body(
    slack_harness: HarnessFactory, caplog: pytest.LogCaptureFixture, case: str, headers: dict[str, str] | None,
    reason: str,
) -> None:
    h = slack_harness()
    caplog.set_level(logging.DEBUG)  # not even DEBUG may carry an unsigned body
    body = json.dumps({"type": "event_callback", "event": {"text": SECRET_MARKER}}).encode()
    if headers is None:
        headers = signed_headers(body, "application/json", timestamp=str(int(time.time()) - 3600))
    else:
        headers = {k: (str(int(time.time())) if v == "<now>" else v) for k, v in headers.items()}
    response = post_raw(h.server.url, body, headers)
    assert response.status_code == 401, case
    assert reason in response.json()["error"]
    assert len(rejection_lines(caplog)) == 1
    assert SECRET_MARKER not in caplog.text
    assert not any(r.exc_info for r in caplog.records)


def test_declared_oversized_body_is_refused_before_it_is_read(slack_harness: HarnessFactory) -> None:
    h = slack_harness(slack__max_body_bytes=65_536)
    parts = urlsplit(h.server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        # Declares 10 MB, sends none of it: the answer must not wait for the body.
        sock.sendall(f"POST {parts.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {10 * 1024 * 1024}\r\n\r\n".encode())
        started = time.perf_counter()
        reply = sock.recv(4096).decode("latin-1")
        assert time.perf_counter() - started < 1.0
    assert reply.startswith("HTTP/1.1 413")


def test_chunked_oversized_body_is_cut_off_at_the_limit(slack_harness: HarnessFactory) -> None:
    h = slack_harness(slack__max_body_bytes=65_536)

    def endless():  # no Content-Length: the server must stop reading at the limit
        for _ in range(200):
            yield b"x" * 16_384

    with httpx.Client(timeout=10) as http:
        try:
            response = http.post(h.server.url, content=endless(), headers={"Content-Type": "application/json"})
        except httpx.TransportError:  # the server may close before the client finishes sending
            return
    assert response.status_code == 413


def test_health_check_and_signed_events_are_answered_during_a_10_mb_flood(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    flood_body = b"{" + b" " * (10 * 1024 * 1024) + b"}"
    stop = threading.Event()
    statuses: list[int] = []

    def flood() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    statuses.append(http.post(h.server.url, content=flood_body,
                                              headers={"Content-Type": "application/json"}).status_code)
                except httpx.TransportError:
                    statuses.append(0)  # closed mid-upload after the 413: also a rejection

    flooders = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
    for thread in flooders:
        thread.start()
    health_url = h.server.url.replace(h.server.path, "/healthz")
    health_s: list[float] = []
    event_s: list[float] = []
    try:
        time.sleep(0.5)  # let the flood get going
        with httpx.Client(timeout=10) as http:
            for i in range(10):
                started = time.perf_counter()
                assert http.get(health_url).status_code == 200
                health_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                response = h.send.event(mention(f"How do I ship to Canada? ({i})", user=f"UFLOOD{i}",
                                                ts=f"1710000100.{i:06d}"))
                event_s.append(time.perf_counter() - started)
                assert response.status_code == 200
    finally:
        stop.set()
        for thread in flooders:
            thread.join(timeout=30)
    assert max(health_s) < 1.0, f"/healthz took up to {max(health_s):.2f}s during the flood"
    assert max(event_s) < 3.0, f"a signed event took up to {max(event_s):.2f}s to ack during the flood"
    assert statuses and all(code in (413, 0) for code in statuses)
    h.answered(10)
    assert h.store.count_turns() == 10
