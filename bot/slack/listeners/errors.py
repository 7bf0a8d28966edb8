"""The one place an unexpected listener error ends: logged in full, the user gets a fixed polite reply."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.blocks import POLITE_ERROR_TEXT

if TYPE_CHECKING:
    from bot.slack.app import SlackServices

log = logging.getLogger(__name__)


def tell_user_something_went_wrong(client: WebClient, body: dict[str, Any]) -> None:
    """Reply where the user acted: in the question's thread, or privately beside a clicked button."""
    try:
        event = body.get("event") or {}
        if event.get("type") in ("app_mention", "message") and event.get("channel") and event.get("user"):
            client.chat_postMessage(
                channel=event["channel"], thread_ts=event.get("thread_ts") or event.get("ts"), text=POLITE_ERROR_TEXT
            )
            return
        channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
        user = (body.get("user") or {}).get("id") or body.get("user_id")
        if channel and user:
            client.chat_postEphemeral(channel=channel, user=user, text=POLITE_ERROR_TEXT)
    except SlackApiError as exc:
        log.error("could not send the apology either (%s)", exc.response.get("error"))


def register(app: App, services: SlackServices) -> None:
    @app.error
    def handle_listener_error(error: Exception, body: dict[str, Any]) -> None:
        log.error(
            "Slack listener failed type=%s event_id=%s: %s",
            body.get("type"),
            body.get("event_id", ""),
            error,
            exc_info=error,
        )
        tell_user_something_went_wrong(services.client, body)
