"""Hand-offs to people: the staff channel hears who needs help, where, and the bot's best guess.

The customer-facing words come from the escalation answerer (same text on every channel);
this module only tells staff. A notice that cannot be delivered is logged as an error with the
turn id, so nobody waits unseen.
"""

from __future__ import annotations

import logging
from typing import Literal

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.conversation_log import ConversationStore
from bot.slack.blocks import escalation_blocks

log = logging.getLogger(__name__)

EscalationOutcome = Literal["notified", "already_escalated", "not_delivered"]


def escalation_key(turn_id: int) -> str:
    """The claim that marks a turn as handed to a person (shared by every replica)."""
    return f"escalation:{turn_id}"


class StaffNotifier:
    def __init__(self, client: WebClient, store: ConversationStore, staff_channel: str) -> None:
        self.client = client
        self.store = store
        self.staff_channel = staff_channel

    def escalate(
        self,
        *,
        turn_id: int,
        question: str,
        would_have_said: str,
        asker: str,
        channel: str,
        message_ts: str,
        reason: str,
        read_as: str = "",
        no_answer_note: str = "",
    ) -> EscalationOutcome:
        """Post the notice once per turn, whichever replica or click gets here first."""
        if not self.store.claim_event(escalation_key(turn_id)):
            log.info("turn %s was already escalated; not notifying staff again", turn_id)
            return "already_escalated"
        if not self.staff_channel:
            log.error(
                "turn %s needs a person but slack.staff_channel is not set; nobody was notified "
                "(set it in config.toml)",
                turn_id,
            )
            return "not_delivered"
        permalink = ""
        if channel and message_ts:
            try:
                permalink = str(self.client.chat_getPermalink(channel=channel, message_ts=message_ts)["permalink"])
            except (SlackApiError, KeyError) as exc:
                log.warning("no permalink for turn %s (%s); notifying without a link", turn_id, exc)
        try:
            self.client.chat_postMessage(
                channel=self.staff_channel,
                text=(f"<@{asker}> asked something with no checked answer: {question[:200]}" if no_answer_note
                      else f"<@{asker}> needs a person: {question[:200]}"),
                blocks=escalation_blocks(
                    question=question,
                    would_have_said=would_have_said,
                    asker=asker,
                    reason=reason,
                    permalink=permalink,
                    read_as=read_as,
                    no_answer_note=no_answer_note,
                ),
                unfurl_links=False,
            )
        except SlackApiError as exc:
            log.error(
                "could not notify staff channel %s about turn %s (%s); the customer is waiting: %s",
                self.staff_channel,
                turn_id,
                exc.response.get("error"),
                permalink or f"{channel}/{message_ts}",
            )
            return "not_delivered"
        log.info("escalated turn=%s to %s", turn_id, self.staff_channel)
        return "notified"
