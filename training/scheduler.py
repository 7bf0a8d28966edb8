"""`train schedule`: check on a cron schedule, train when enough new staff labels exist.

The run itself decides whether there is enough new data (`run_training` without `force`), so a
manual run, a Slack-triggered run and a scheduled one all follow the same rule and share one
lock. Results go to the staff channel when Slack is configured, since that is where the people
who labelled the data will look.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from bot.config import Settings
from training.run import TrainingOutcome, run_training

if TYPE_CHECKING:
    from bot.conversation_log import ConversationStore

log = logging.getLogger(__name__)

MAX_SLEEP_S = 60.0  # wake up regularly so clock changes and Ctrl-C are noticed


def next_fire_time(cron: str, after: datetime) -> datetime:
    from croniter import croniter

    fire: datetime = croniter(cron, after).get_next(datetime)
    return fire


def slack_notifier(settings: Settings) -> Callable[[str], None] | None:
    """Post to `slack.staff_channel` with the bot token; None when either is not configured."""
    token = settings.secrets.slack_bot_token
    channel = settings.slack.staff_channel
    if token is None or not channel:
        return None
    from slack_sdk import WebClient

    client = WebClient(token=token.get_secret_value(), base_url=settings.slack.api_base_url)

    def post(message: str) -> None:
        client.chat_postMessage(channel=channel, text=f":seedling: {message}")

    return post


def run_scheduled_check(
    settings: Settings,
    *,
    store: ConversationStore | None = None,
    notify: Callable[[str], None] | None = None,
) -> TrainingOutcome:
    """One scheduled check: train if enough new labels arrived, report the result."""
    outcome = run_training(settings, store=store, notify=notify, force=False)
    log.info("scheduled training check: %s", outcome.summary)
    return outcome


def run_schedule(
    settings: Settings,
    *,
    store: ConversationStore | None = None,
    notify: Callable[[str], None] | None = None,
    max_checks: int | None = None,
    now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    sleep: Callable[[float], None] = time.sleep,
) -> list[TrainingOutcome]:
    """Wait for each cron fire time and run a check; forever unless `max_checks` is given."""
    cron = settings.training.schedule_cron
    outcomes: list[TrainingOutcome] = []
    while max_checks is None or len(outcomes) < max_checks:
        fire = next_fire_time(cron, now())
        log.info("next training check at %s (cron %r)", fire.isoformat(timespec="minutes"), cron)
        while (remaining := (fire - now()).total_seconds()) > 0:
            sleep(min(remaining, MAX_SLEEP_S))
        outcomes.append(run_scheduled_check(settings, store=store, notify=notify))
    return outcomes
