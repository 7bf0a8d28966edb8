"""The few error types the framework raises on purpose.

Boundaries (CLI, Slack error handler, Rasa action server, indexer, training job) catch
`BotError` and turn it into an exit code, a polite reply, a skipped file or a kept model.
Anything else is a bug and is allowed to surface with a traceback in the logs.
"""

from __future__ import annotations


class BotError(Exception):
    """Base for errors a user can act on; the message says what to do."""


class ConfigError(BotError):
    """The configuration is invalid; the message names the key and the fix."""


class ModelNotFoundError(BotError):
    """A model the config asks for is not installed or not at the configured path."""


class AnswererUnavailable(BotError):
    """An answerer cannot answer right now (server down, model missing, degenerate output).

    The pipeline catches it and falls back to the next route instead of failing the customer.
    """


class NoEvidence(AnswererUnavailable):
    """Nothing the shop published or its staff wrote answers the question well enough.

    Not a fault: the honest outcome is a hand-off that says "no checked answer yet", and `found`
    tells staff what came closest (shown with the hand-off, never to the customer)."""

    def __init__(self, message: str, found: str = "") -> None:
        super().__init__(message)
        self.found = found


class StoreError(BotError):
    """The conversation log cannot be opened or migrated."""


class StateError(BotError):
    """Runtime state on disk (state dir, knowledge index, registries) cannot be used as it is.

    Found at start, before any model loads; the message names the path and the fix.
    """
