"""Opening the conversation log the way every entry point does: its folder checked first, so an
unwritable or misplaced log fails with a message that names the fix instead of an SQL error.
(Not imported by the package itself: `bot.state_check` reads `sqlite_file` from this package.)"""

from __future__ import annotations

from bot.config import Settings
from bot.conversation_log.store import ConversationStore
from bot.state_check import check_state_at_start


def open_store(settings: Settings) -> ConversationStore:
    """Open the conversation log after checking its folder; the file itself is checked as it opens."""
    check_state_at_start(settings, knowledge_index=False, registries=False)
    return ConversationStore.open(settings.database_url, echo=settings.database.echo)
