"""Cheap checks on an HTTP request to the Slack endpoint, before Bolt parses anything.

Bolt reads the whole body, parses it, and only then checks the signature; it logs the whole
body of a badly signed request at INFO; and a body that is not what Slack sends (broken JSON,
invalid UTF-8, a form `payload` that is not JSON, a timestamp that is not a number) raises
inside Bolt as a 500 with a traceback. An unsigned 10 MB POST so stalled the event loop for
seconds. These checks run first and in this order, each as cheap as it can be: size (from
Content-Length, before reading), signature (one HMAC over the raw bytes), shape (parsing, only
for requests Slack signed). Each rejection is a status code and one log line without the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

SIGNATURE_MAX_AGE_S = 300  # what Slack and Bolt allow between the timestamp and now


@dataclass(frozen=True)
class Rejection:
    status: int
    reason: str  # for the log line and the JSON error body; never contains the request body


class BodyTooLarge(Exception):
    pass


def content_length_problem(headers: Mapping[str, str], max_bytes: int) -> Rejection | None:
    """413 from the declared length alone, so an oversized body is never read."""
    declared = headers.get("content-length")
    if declared is None:
        return None
    try:
        length = int(declared)
    except ValueError:
        return Rejection(400, "Content-Length is not a number")
    if length < 0:
        return Rejection(400, "Content-Length is negative")
    if length > max_bytes:
        return Rejection(413, f"body of {length} bytes is over the {max_bytes}-byte limit")
    return None


async def read_body_limited(receive: Callable[[], Awaitable[dict[str, Any]]], max_bytes: int) -> bytes:
    """The request body, or `BodyTooLarge` as soon as more than `max_bytes` arrived (chunked uploads)."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"body is over the {max_bytes}-byte limit")
        chunks.append(chunk)
        more = bool(message.get("more_body", False))
    return b"".join(chunks)


def signature_problem(
    headers: Mapping[str, str], body: bytes, signing_secret: str, now: Callable[[], float] = time.time
) -> Rejection | None:
    """401 unless Slack signed exactly these bytes within the last five minutes."""
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature", "")
    if not timestamp or not signature:
        return Rejection(401, "missing X-Slack-Request-Timestamp or X-Slack-Signature")
    if not timestamp.isdigit():
        return Rejection(401, "X-Slack-Request-Timestamp is not a number")
    if abs(now() - int(timestamp)) > SIGNATURE_MAX_AGE_S:
        return Rejection(401, "X-Slack-Request-Timestamp is more than five minutes off")
    if not hmac.compare_digest(slack_signature(signing_secret, timestamp, body), signature.encode("utf-8", "replace")):
        return Rejection(401, "invalid signature")
    return None


def slack_signature(signing_secret: str, timestamp: str, body: bytes) -> bytes:
    """Slack's v0 signature over the raw bytes (slack_sdk's verifier decodes them as UTF-8
    first, which raises on a body that is not)."""
    digest = hmac.new(signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    return b"v0=" + digest.hexdigest().encode()


def payload_problem(content_type: str, body: bytes) -> Rejection | None:
    """400 when a signed body is not what Slack sends: an Events API JSON object, or a form
    whose `payload` (interactivity) is a JSON object; slash commands are plain forms."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(400, "body is not valid UTF-8")
    if "application/json" in content_type:
        return _json_object_problem(text, "body")
    if "application/x-www-form-urlencoded" in content_type:
        try:
            form = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=1000)
        except ValueError as exc:
            return Rejection(400, f"form body does not parse ({exc})")
        if "payload" in form:
            return _json_object_problem(form["payload"][0], "form field 'payload'")
        return None
    return Rejection(400, f"unsupported Content-Type {content_type!r}; Slack sends JSON or a form")


def _json_object_problem(text: str, what: str) -> Rejection | None:
    try:
        value = json.loads(text)
    except ValueError:
        return Rejection(400, f"{what} is not valid JSON")
    if not isinstance(value, dict):
        return Rejection(400, f"{what} is JSON but not an object")
    return None
