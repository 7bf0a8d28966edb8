"""`/supportbot status | reindex | train` for staff.

Status answers in the command's own (private) response. Re-indexing and training run in the
background and report to the staff channel, or to the person who asked by DM when no staff
channel is set, because a training run outlives the command's 30-minute response URL.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App
from slack_sdk.errors import SlackApiError

from bot.slack import ids
from bot.slack.blocks import status_text, training_line
from bot.slack.middleware import require_staff
from bot.slack.status import collect_status
from bot.training_record import TrainingRun, last_training_run

if TYPE_CHECKING:
    from bot.slack.app import SlackServices

log = logging.getLogger(__name__)

HELP_TEXT = (
    "*/supportbot* commands for staff:\n"
    "• `status`: answers today, votes, serving versions, last training run\n"
    "• `reindex`: re-read the knowledge folder now\n"
    "• `train`: start a training run in the background; the result is posted when it ends "
    "(`train force` runs even with few new labels)"
)


def training_outcome_text(outcome: Any, already_told: list[str], last: TrainingRun | None) -> str:
    """The closing line of a run: its status and new version, and its summary unless already posted."""
    status = getattr(outcome, "status", None)
    if status is None:  # a job that reports only through last_run.json
        return f"Training run finished: {training_line(last)}" if last else f"Training run finished: {outcome}"
    text = f"Training run finished: *{status}*"
    version = getattr(outcome, "version", None)
    if getattr(outcome, "promoted", False) and version:
        text += f", now serving {version}"
    summary = str(getattr(outcome, "summary", "") or "")
    if summary and summary not in already_told:
        text += f"\n{summary}"
    return text


def register(app: App, services: SlackServices) -> None:
    staff_only = require_staff(services.staff, services.client)

    def report_to(user: str) -> Any:
        destination = services.settings.slack.staff_channel or user

        def report(text: str) -> None:
            try:
                services.client.chat_postMessage(channel=destination, text=text)
            except SlackApiError as exc:
                log.error("could not post a job report to %s (%s): %s", destination, exc.response.get("error"), text)

        return report

    def start_reindex(user: str) -> str:
        knowledge = services.knowledge
        if knowledge is None:
            return "This process has no knowledge base to re-index."

        def work() -> str:
            outcome = knowledge.sync()
            summary = getattr(outcome, "summary", None)  # IndexReport.summary() says what changed
            shown = summary() if callable(summary) else outcome
            return f"Knowledge base re-indexed: {shown}" if shown is not None else "Knowledge base re-indexed."

        if not services.jobs.start("reindex", user, work, report_to(user)):
            return "A re-index is already running; its result will be posted when it ends."
        return "Re-indexing the knowledge base; I'll post the result when it's done."

    def start_training(user: str, force: bool) -> str:
        running = services.jobs.running("train")
        if running is not None:
            return (
                f"A training run started by <@{running.started_by}> at "
                f"{running.started_at:%H:%M} UTC is still running; its result will be posted when it ends."
            )
        report = report_to(user)
        told: list[str] = []

        def notify(message: object) -> None:
            told.append(str(message))
            report(str(message))

        def work() -> str:
            # Imported here, off the 3-second ack path: the training stack loads torch.
            run_training = services.load_trainer()
            extra = {"force": True} if force else {}
            outcome = run_training(services.settings, notify=notify, **extra)
            return training_outcome_text(outcome, told, last_training_run(services.settings))

        if not services.jobs.start("train", user, work, report):
            return "A training run is already running; its result will be posted when it ends."
        where = "the staff channel" if services.settings.slack.staff_channel else "a direct message"
        return f"Training started in the background; I'll post the result in {where} when it ends."

    @app.command(ids.SLASH_COMMAND, middleware=[staff_only])
    def supportbot_command(ack: Ack, command: dict[str, Any]) -> None:
        words = str(command.get("text") or "").split()
        sub = words[0].lower() if words else "help"
        user = str(command.get("user_id") or "")
        log.info("/supportbot %s by %s", sub, user)
        if sub == "status":
            ack(text=status_text(collect_status(services.settings, services.store, memory=services.memory)))
        elif sub == "reindex":
            ack(text=start_reindex(user))
        elif sub == "train":
            ack(text=start_training(user, force="force" in words[1:]))
        else:
            ack(text=HELP_TEXT)
