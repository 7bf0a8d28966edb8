"""The human hand-off: tells the customer a person will follow up.

Two kinds read differently. An *escalation* is a question that needs a person (a dead plant and
a refund, one customer's order, an angry message). A *no checked answer* hand-off is a question
the bot could answer in kind but has no evidence for: the customer is told so, and which team
will reply, so an honest "I don't know yet" never reads like a complaint being escalated.

Notifying staff is the channel's job (Slack posts to the staff channel); this answerer only
writes the customer-facing text, so every channel hands off with the same words.
"""

from __future__ import annotations

from bot.config import Route
from bot.interfaces import AskContext, Draft, PartialCallback

HANDOFF_TEXT = (
    "Thanks for your patience. I've passed this to a person on the {company} support team, "
    "and they will follow up with you here shortly."
)
NO_ANSWER_TEXT = "I don't have a checked answer for that yet, so I've asked our {team}; they will reply here."
DEFAULT_TEAMS = {"domain": "plant team", "retrieval": "support team"}


class EscalationAnswerer:
    route: Route = "escalate"

    def __init__(self, company_name: str, no_answer_text: str = NO_ANSWER_TEXT,
                 teams: dict[str, str] | None = None) -> None:
        self.text = HANDOFF_TEXT.format(company=company_name)
        self.no_answer_template = no_answer_text
        self.teams = {**DEFAULT_TEAMS, **(teams or {})}

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        return Draft(text=self.text, confidence=1.0, model_version="human", kind="escalation")

    def no_answer(self, route: str) -> Draft:
        """The hand-off of a question `route` could not back with evidence."""
        team = self.teams.get(route, "team")
        return Draft(text=self.no_answer_template.format(team=team), confidence=0.0, model_version="human",
                     kind="no_answer")
