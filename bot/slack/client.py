"""The Slack Web API client: configurable base URL and one retry policy for every call.

Slack answers a burst with 429 + Retry-After and has the odd 5xx; a support answer must survive
both. One handler decides all retries (slack_sdk's built-in handlers share one attempt counter
and add up to a second of jitter to every Retry-After, which makes tests and bursts slow).
Only failures where the request surely had no effect, or that Slack asks us to repeat, are
retried: a timed-out `chat.postMessage` may have been posted, and posting it twice is worse.
"""

from __future__ import annotations

import logging
import random
import time
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler, RetryState
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse

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


def build_web_client(settings: Settings) -> WebClient:
    token = settings.secrets.slack_bot_token
    if token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set; create the Slack app (docs/slack.md) and export its bot token")
    base_url = settings.slack.api_base_url
    if not base_url.endswith("/"):
        base_url += "/"
    return WebClient(
        token=token.get_secret_value(),
        base_url=base_url,
        timeout=30,
        retry_handlers=[SlackBackoffRetryHandler(max_retry_count=settings.slack.api_max_retries)],
    )
