"""The Slack Web API client: configurable base URL and one retry policy for every call.

Slack answers a burst with 429 + Retry-After and has the odd 5xx; a support answer must survive
both. One handler decides all retries (slack_sdk's built-in handlers share one attempt counter
and add up to a second of jitter to every Retry-After, which makes tests and bursts slow).
Only failures where the request surely had no effect, or that Slack asks us to repeat, are
retried: a timed-out `chat.postMessage` may have been posted, and posting it twice is worse.
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler, RetryState
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.web import SlackResponse

from bot import metrics
from bot.config import Settings
from bot.errors import ConfigError

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {429, 500, 502, 503, 504}
# Errors Slack reports with HTTP 200 that mean "try again", not "your request is wrong".
RETRYABLE_API_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
MAX_RETRY_AFTER_S = 60.0


class SlackBackoffRetryHandler(RetryHandler):
    """Retry-After on 429, exponential backoff with jitter otherwise."""

    def __init__(self, max_retry_count: int = 4, base_delay_s: float = 0.5, max_delay_s: float = 20.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is not None:
            if response.status_code in RETRYABLE_STATUS:
                return True
            body = response.body or {}
            return body.get("ok") is False and body.get("error") in RETRYABLE_API_ERRORS
        return _request_never_arrived(error)

    def delay_for(self, attempt: int, response: HttpResponse | None) -> float:
        retry_after = _retry_after_seconds(response)
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_S)
        backoff = min(self.max_delay_s, self.base_delay_s * (2**attempt))
        return backoff * (0.5 + random.random() / 2)

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        delay = self.delay_for(state.current_attempt, response)
        status = response.status_code if response is not None else type(error).__name__
        metrics.SLACK_API_RETRIES.labels(method=request.url.rsplit("/", 1)[-1]).inc()
        log.warning(
            "Slack API call %s failed (%s); retry %d of %d in %.1fs",
            request.url.rsplit("/", 1)[-1],
            status,
            state.current_attempt + 1,
            self.max_retry_count,
            delay,
        )
        state.next_attempt_requested = True
        time.sleep(delay)  # the caller's thread owns this call; the back-off is the point
        state.increment_current_attempt()


def _retry_after_seconds(response: HttpResponse | None) -> float | None:
    if response is None:
        return None
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return max(0.0, float(values[0]))
            except (TypeError, ValueError):
                return None
    return None


def _request_never_arrived(error: Exception | None) -> bool:
    """A refused connection or an unresolvable host: nothing reached Slack, so repeating is safe."""
    if isinstance(error, ConnectionRefusedError):
        return True
    if isinstance(error, URLError):
        reason = error.reason
        return isinstance(reason, ConnectionRefusedError) or type(reason).__name__ == "gaierror"
    return False


class SlackUnreachable(SlackApiError):
    """Slack could not be reached or gave no usable answer, after the retries.

    A `SlackApiError`, so every handler that already copes with Slack saying no (and logs
    `exc.response.get("error")`, here "slack_unreachable") also copes with a network failure,
    instead of a raw `URLError` escaping a listener and losing the question it was handling.
    """

    def __init__(self, method: str, cause: BaseException) -> None:
        response = SlackResponse(
            client=None,
            http_verb="POST",
            api_url=method,
            req_args={},
            data={"ok": False, "error": "slack_unreachable", "detail": f"{type(cause).__name__}: {cause}"},
            headers={},
            status_code=0,
        )
        super().__init__(f"Slack API {method} unreachable ({type(cause).__name__}: {cause})", response)


# What a failed round trip to Slack raises below slack_sdk: refused/reset connections, DNS and
# TLS failures, timeouts (all OSError), a broken HTTP exchange, a body that is not JSON.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (OSError, http.client.HTTPException, ValueError)


class ResilientWebClient(WebClient):
    """A WebClient whose failures are all `SlackApiError`s (see `SlackUnreachable`)."""

    def api_call(self, api_method: str, *args: Any, **kwargs: Any) -> SlackResponse:
        try:
            response = super().api_call(api_method, *args, **kwargs)
        except SlackApiError:
            metrics.SLACK_API_CALLS.labels(method=api_method, outcome="error").inc()
            raise
        except NETWORK_ERRORS as exc:
            metrics.SLACK_API_CALLS.labels(method=api_method, outcome="unreachable").inc()
            raise SlackUnreachable(api_method, exc) from exc
        metrics.SLACK_API_CALLS.labels(method=api_method, outcome="ok").inc()
        return response


# auth.test errors that no amount of waiting fixes: the token itself is wrong.
FATAL_AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                     "not_allowed_token_type", "missing_scope", "invalid_token"}


def wait_for_slack(
    client: WebClient,
    *,
    max_delay_s: float = 60.0,
    stop: threading.Event | None = None,
    sleep: Callable[[float], bool] | None = None,
) -> dict[str, Any] | None:
    """Call auth.test until Slack answers; the result, or None when `stop` was set meanwhile.

    A bot started while Slack (or the proxy in front of it) is unreachable should wait for it,
    not die: it logs one line per attempt and backs off. A rejected token is a configuration
    error and raises `ConfigError` at once.
    """
    stop = stop or threading.Event()
    wait = sleep or stop.wait
    delay = 1.0
    attempt = 0
    while not stop.is_set():
        attempt += 1
        try:
            return dict(client.auth_test().data)  # type: ignore[arg-type]
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            if error in FATAL_AUTH_ERRORS:
                raise ConfigError(
                    f"Slack rejected SLACK_BOT_TOKEN (auth.test: {error}); export the bot token of the "
                    "installed app (docs/slack.md)"
                ) from None
            detail = exc.response.get("detail") or error
            log.warning("Slack Web API at %s is not answering (attempt %d: %s); retrying in %.0fs",
                        client.base_url, attempt, detail, delay)
        if wait(delay):
            break
        delay = min(max_delay_s, delay * 2)
    return None


def build_web_client(settings: Settings) -> WebClient:
    token = settings.secrets.slack_bot_token
    if token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set; create the Slack app (docs/slack.md) and export its bot token")
    base_url = settings.slack.api_base_url
    if not base_url.endswith("/"):
        base_url += "/"
    return ResilientWebClient(
        token=token.get_secret_value(),
        base_url=base_url,
        timeout=30,
        retry_handlers=[SlackBackoffRetryHandler(max_retry_count=settings.slack.api_max_retries)],
    )
