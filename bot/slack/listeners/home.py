"""App Home: staff see the bot's health and what to review; customers see how to ask."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slack_bolt import App

from bot.slack.blocks import customer_home_view, staff_home_view
from bot.slack.status import collect_status

if TYPE_CHECKING:
    from bot.slack.app import SlackServices


def register(app: App, services: SlackServices) -> None:
    @app.event("app_home_opened")
    def publish_home(event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home":
            return
        user = str(event.get("user") or "")
        company = services.settings.app.company_name
        if services.staff.is_staff(user):
            view = staff_home_view(collect_status(services.settings, services.store, memory=services.memory), company)
        else:
            view = customer_home_view(company)
        services.client.views_publish(user_id=user, view=view)
