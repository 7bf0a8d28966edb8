"""Passwords inside URLs never reach a screen or a log: `scheme://user:***@host`.

A database URL may carry its password inline (`postgresql+psycopg://bot:s3cret@db/supportbot`),
and drivers, SQLAlchemy and Chroma quote the URL in their error messages. Rather than trust
every place that prints one, the CLI passes config output, error lines and every log record
through these two functions. They mask on the safe side: anything shaped like
`scheme://user:password@` loses the password, even when it was not one.
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# scheme://[user]:password@ — the password stops at the first "@" (SQLAlchemy's rule: an "@"
# inside a password must be %-encoded), at whitespace, or at a quote around the URL in a message.
_URL_PASSWORD = re.compile(
    r"(?P<prefix>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"<>]*):(?P<password>[^@\s'\"<>]+)@"
)


def mask_url_password(url: str) -> str:
    """The URL with its password (if any) shown as `***`; everything else unchanged."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('prefix')}:{MASK}@", url)


def mask_secrets_in_text(text: str) -> str:
    """Any message with URL passwords masked wherever a URL appears in it."""
    return mask_url_password(text) if "://" in text else text


class MaskUrlPasswords(logging.Filter):
    """Handler filter: renders the record once and masks URL passwords in it and its traceback.

    Installed on the CLI's log handler, so library code may log driver errors as they come.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets_in_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets_in_text(record.exc_text)
        return True
