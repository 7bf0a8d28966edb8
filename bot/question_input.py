"""What a question may contain by the time it reaches the router, the models and the log.

Every channel hands the pipeline text it did not check: `ask` gets argv, where Python keeps
invalid UTF-8 as lone surrogates; `chat` reads a terminal or a pipe; Slack and Rasa pass
JSON from the network. Lone surrogates cannot be encoded for the database or the tokenizer,
and a NUL byte makes Postgres refuse the whole turn, so the pipeline cleans every question
here, once, the same way for every channel.
"""

from __future__ import annotations

import re
from dataclasses import fields, replace
from typing import Any

from bot.interfaces import AskContext

REPLACEMENT = "\ufffd"

_SURROGATE_RUN = re.compile(r"[\ud800-\udfff]+")
_ESCAPED_BYTES = re.compile(r"[\udc80-\udcff]+")  # how `surrogateescape` keeps bytes it could not decode
# Unicode category Cc (C0, DEL, C1) less tab and newline; "\r" became "\n" before this runs.
_DROPPED_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]+")

TOO_LONG_REASON = "question too long"  # Answer.reason of the fixed reply: channels can tell it apart
TOO_LONG_REPLY = (
    "Your message is too long for me to read: {length:,} characters, and I can take at most "
    "{limit:,}. Please ask again with just your question, in a shorter message."
)


def clean_question(text: str) -> str:
    """Invalid UTF-8 as U+FFFD, line ends as "\\n", control characters other than newline and tab removed."""
    if _SURROGATE_RUN.search(text):
        text = _repair_surrogates(text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _DROPPED_CONTROLS.sub("", text)


def clean_context(ctx: AskContext) -> AskContext:
    """The same cleaning for who-and-where (`ask --user`, Rasa sender ids): they are logged too."""
    changed: dict[str, Any] = {f.name: clean_question(v) for f in fields(ctx) if isinstance(v := getattr(ctx, f.name), str)}
    changed = {k: v for k, v in changed.items() if v != getattr(ctx, k)}
    return replace(ctx, **changed) if changed else ctx


def too_long_reply(length: int, limit: int) -> str:
    """The fixed answer to a question over `app.max_question_chars` (no model ever sees it)."""
    return TOO_LONG_REPLY.format(length=length, limit=limit)


def _repair_surrogates(text: str) -> str:
    """Bytes kept by `surrogateescape` are decoded again (each invalid byte → U+FFFD); any other
    lone surrogate, e.g. from a JSON `\\ud800` escape, becomes U+FFFD too."""

    def redecode(match: re.Match[str]) -> str:
        raw = match.group().encode("utf-8", "surrogateescape")
        return raw.decode("utf-8", "replace")

    text = _ESCAPED_BYTES.sub(redecode, text)
    return _SURROGATE_RUN.sub(lambda m: REPLACEMENT * len(m.group()), text)
