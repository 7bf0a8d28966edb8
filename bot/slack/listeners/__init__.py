"""Bolt listeners, one module per concern; `register(app, services)` wires them all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt import App

from bot.slack.listeners import commands, errors, feedback, flagging, home, questions

if TYPE_CHECKING:
    from bot.slack.app import SlackServices


def register(app: App, services: SlackServices) -> None:
    for module in (questions, feedback, flagging, home, commands, errors):
        module.register(app, services)
