"""The human hand-off: tells the customer a person will follow up.

Notifying staff is the channel's job (Slack posts to the staff channel); this answerer only
writes the customer-facing text, so every channel escalates with the same words.
"""

from __future__ import annotations

from bot.config import Route
from bot.interfaces import AskContext, Draft, PartialCallback

HANDOFF_TEXT = (
    "Thanks for your patience. I've passed this to a person on the {company} support team, "
    "and they will follow up with you here shortly."
)


class EscalationAnswerer:
    route: Route = "escalate"

    def __init__(self, company_name: str) -> None:
        self.text = HANDOFF_TEXT.format(company=company_name)

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        return Draft(text=self.text, confidence=1.0, model_version="human")
