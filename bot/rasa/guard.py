"""What the action server checks before rasa-sdk sees a request: token, size, shape.

Anyone who can reach the action server can answer as, and vote for, any Rasa `sender_id`:
the webhook trusts the tracker it is sent. So the server listens on 127.0.0.1 by default, and
when `SUPPORTBOT_RASA_TOKEN` is set every request except `/health` must carry that token
(`Authorization: Bearer ...`, or `?token=...`, which is what Rasa's `action_endpoint: token:`
sends).

rasa-sdk answers whatever it cannot run through a catch-all that logs a traceback, echoes the
request body and returns 500; Sanic's own faults (wrong method, unknown path, body too large)
land there too. Here every request fault becomes a 4xx with a JSON `{"error": ...}` body and
one log line that never holds the token or the body, and only a real bug in our code is a 500.
"""

from __future__ import annotations

import hmac
import json
import logging
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sanic import Request, Sanic, response
from sanic.exceptions import PayloadTooLarge, SanicException
from sanic.handlers import ErrorHandler
from sanic.response import HTTPResponse

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook"
OPEN_PATHS = frozenset({"/health"})  # a load balancer's probe carries no token
TOKEN_QUERY_PARAMETER = "token"  # the name Rasa's EndpointConfig uses for `token:`
LOGGED_PATH_CHARS = 120


@dataclass(frozen=True)
class CallProblem:
    """Why a webhook call is refused: the HTTP status and the JSON body Rasa gets."""

    status: int
    error: str
    action_name: str = ""


def token_from_request(request: Request) -> str | None:
    """The token a caller sent, from `Authorization: Bearer` or else the `token` query parameter."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.args.get(TOKEN_QUERY_PARAMETER)


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; bytes, because `compare_digest` refuses non-ASCII `str`."""
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def _inflate(body: bytes, max_bytes: int) -> bytes | CallProblem:
    """Deflate data decompressed to at most `max_bytes`: a small body must not become a huge one."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(body, max_bytes)
    except zlib.error:
        return CallProblem(400, "request body says Content-Encoding: deflate but is not deflate data")
    if inflater.unconsumed_tail:
        return CallProblem(413, f"request body is larger than {max_bytes} bytes once decompressed")
    if not inflater.eof:
        return CallProblem(400, "request body says Content-Encoding: deflate but the data is truncated")
    return raw


def _is_text(value: Any) -> bool:
    """A non-empty string that can be stored: JSON escapes can smuggle in lone surrogates."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_action_call(
    body: bytes, content_encoding: str | None, known_actions: Collection[str], max_bytes: int
) -> dict[str, Any] | CallProblem:
    """The decoded action call, or why it cannot be run.

    Unknown action names pass through so rasa-sdk answers them with its own 404. Everything
    the SDK or our actions would otherwise trip over (and turn into a 500) is refused here.
    """
    encoding = (content_encoding or "").strip().lower()
    raw: bytes | CallProblem
    if encoding in ("", "identity"):
        raw = body
    elif encoding == "deflate":
        raw = _inflate(body, max_bytes)
    else:
        return CallProblem(400, f"unsupported Content-Encoding {(content_encoding or '')[:40]!r} (send deflate or none)")
    if isinstance(raw, CallProblem):
        return raw
    try:
        call = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return CallProblem(400, "Invalid body request: not UTF-8 text")
    except (ValueError, RecursionError):  # not JSON, nested too deep, an integer too long
        return CallProblem(400, "Invalid body request: not JSON")
    if not isinstance(call, dict):
        return CallProblem(400, f"Invalid body request: expected a JSON object, got {type(call).__name__}")
    action = call.get("next_action")
    if not isinstance(action, str) or not action:
        return CallProblem(400, "Invalid body request: 'next_action' must be a non-empty string")
    version = call.get("version")
    if version is not None and not isinstance(version, str):
        return CallProblem(400, "Invalid body request: 'version' must be a string", action)
    if action not in known_actions:
        return call
    problem = _tracker_problem(call.get("tracker"))
    if problem:
        return CallProblem(400, problem, action)
    domain = call.get("domain")
    if domain is not None and not isinstance(domain, dict):
        return CallProblem(400, "malformed domain: 'domain' must be an object", action)
    return call


def _tracker_problem(tracker: Any) -> str | None:
    if not isinstance(tracker, dict):
        return "malformed tracker: 'tracker' must be an object"
    if not _is_text(tracker.get("sender_id")):
        return "malformed tracker: 'tracker.sender_id' must be a non-empty string of valid Unicode"
    for key, kind in (("latest_message", dict), ("slots", dict), ("events", list)):
        value = tracker.get(key)
        if value is not None and not isinstance(value, kind):
            return f"malformed tracker: 'tracker.{key}' must be a JSON {kind.__name__}"
    message = tracker.get("latest_message") or {}
    for key in ("text", "message_id"):
        value = message.get(key)
        if value is not None and value != "" and not _is_text(value):
            return f"malformed tracker: 'tracker.latest_message.{key}' must be a string of valid Unicode"
    return None


def _where(request: Request | None) -> str:
    """Method, path (never the query, which may hold the token) and client, for a log line."""
    if request is None:
        return "method=? path=? client=?"
    try:
        client = request.ip or "?"
    except Exception:  # a request that failed before its connection info was attached
        client = "?"
    return f"method={request.method} path={request.path[:LOGGED_PATH_CHARS]!r} client={client}"


class ActionServerErrors(ErrorHandler):
    """Every fault as a JSON body: Sanic's with their own status and a one-line log, ours as 500.

    Replaces rasa-sdk's catch-all handler, which reports request faults as 500 with the
    request body echoed back.
    """

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, SanicException) and exception.status_code < 500:
            status = exception.status_code
            message = str(exception) or "bad request"
            log.warning("rejected rasa request status=%d %s: %s", status, _where(request), message)
            headers = getattr(exception, "headers", None) or None
            return response.json({"error": message}, status=status, headers=headers)
        log.error("rasa action server failed %s", _where(request), exc_info=exception)
        return response.json({"error": "internal error in the action server; see its log"}, status=500)


def install_request_guard(
    app: Sanic, *, known_actions: Collection[str], token: str | None, max_body_bytes: int
) -> None:
    """Add the token, size and shape checks to rasa-sdk's app, and its JSON error handler."""
    app.config.REQUEST_MAX_SIZE = max_body_bytes  # Sanic answers 413 before reading such a body
    app.error_handler = ActionServerErrors()

    @app.signal("http.lifecycle.exception")
    async def remember_request_fault(request: Request, exception: BaseException) -> None:
        # Sanic runs request middleware for faults raised before the handler too (wrong
        # method, unknown path, body over the limit). Their body is missing or partial: past
        # the token check, the error handler answers them, not the body checks below.
        if request is not None:
            request.ctx.request_fault = exception

    @app.on_request
    async def guard_rasa_request(request: Request) -> HTTPResponse | None:
        fault = getattr(request.ctx, "request_fault", None)
        if isinstance(fault, PayloadTooLarge):
            return None  # 413 before the token check: nothing of the body was read
        if token is not None and request.path not in OPEN_PATHS:
            given = token_from_request(request)
            if not token_matches(given, token):
                reason = "no token" if not given else "wrong token"
                log.warning("rejected rasa request status=401 %s: %s", _where(request), reason)
                return response.json(
                    {"error": f"unauthorized: {reason} (send the action server's token)"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        if fault is not None or request.method != "POST" or request.path != WEBHOOK_PATH:
            return None
        parsed = parse_action_call(
            request.body, request.headers.get("Content-Encoding"), known_actions, max_body_bytes
        )
        if isinstance(parsed, CallProblem):
            log.warning(
                "rejected rasa action call status=%d action=%s %s: %s",
                parsed.status,
                parsed.action_name or "(unknown)",
                _where(request),
                parsed.error,
            )
            return response.json({"error": parsed.error, "action_name": parsed.action_name}, status=parsed.status)
        # rasa-sdk reads `request.json`: it runs what was checked (sanic annotates the cache as None).
        request.parsed_json = parsed  # type: ignore[assignment]
        return None
