"""The conversation log: every turn, vote and staff label, in one SQL database."""

from bot.conversation_log.store import ConversationStore, EarlierTurn, LabeledTurn

__all__ = ["ConversationStore", "EarlierTurn", "LabeledTurn"]
