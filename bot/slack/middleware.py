"""Who may do what, and how fast: the staff check and the per-user question limit.

The staff check is Bolt listener middleware, so a listener for a staff-only feature never runs
for anyone else; the refusal is shaped for the payload (ephemeral text for a command or a
shortcut, a field error in a modal). The rate limit counts questions in the shared database,
so it holds across restarts and replicas.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import Ack, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.conversation_log import ConversationStore
from bot.slack import ids

log = logging.getLogger(__name__)

STAFF_ONLY_TEXT = "Sorry, only the support staff can do that."


class StaffDirectory:
    """Staff are configured user ids plus the members of a Slack user group (cached)."""

    def __init__(
        self,
        client: WebClient,
        user_ids: list[str],
        usergroup: str = "",
        cache_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.user_ids = frozenset(user_ids)
        self.usergroup = usergroup
        self.cache_s = cache_s
        self.clock = clock
        self._members: frozenset[str] = frozenset()
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def is_staff(self, user_id: str) -> bool:
        if not user_id:
            return False
        if user_id in self.user_ids:
            return True
        return bool(self.usergroup) and user_id in self._group_members()

    def _group_members(self) -> frozenset[str]:
        with self._lock:
            fresh = self._fetched_at is not None and self.clock() - self._fetched_at < self.cache_s
            if fresh:
                return self._members
            try:
                response = self.client.usergroups_users_list(usergroup=self.usergroup)
                self._members = frozenset(response.get("users") or [])
                self._fetched_at = self.clock()
            except SlackApiError as exc:
                # Keep the last known members: a Slack hiccup must not lock staff out.
                log.warning(
                    "cannot list members of staff user group %s (%s); using the last known %d",
                    self.usergroup,
                    exc.response.get("error"),
                    len(self._members),
                )
            return self._members


def require_staff(staff: StaffDirectory, client: WebClient) -> Callable[..., Any]:
    """Listener middleware: staff pass through; anyone else gets a polite refusal, nothing stored."""

    def staff_only(
        body: dict[str, Any], context: Any, ack: Ack, next: Callable[[], None]
    ) -> BoltResponse | None:
        user_id = context.user_id or ""
        if staff.is_staff(user_id):
            next()
            return None
        log.info("refused staff-only %s from non-staff user=%s", body.get("type") or "command", user_id)
        # Bolt sends back what a listener middleware returns when it does not call next().
        if body.get("type") == "view_submission":
            return ack(response_action="errors", errors={ids.FLAG_VERDICT_BLOCK: STAFF_ONLY_TEXT})
        if "command" in body:  # slash commands answer in the ack itself, visible only to the user
            return ack(text=STAFF_ONLY_TEXT)
        response = ack()
        channel = (body.get("channel") or {}).get("id") or body.get("channel_id")
        if channel:
            try:
                client.chat_postEphemeral(channel=channel, user=user_id, text=STAFF_ONLY_TEXT)
            except SlackApiError as exc:
                log.warning("could not tell user=%s that flagging is staff-only (%s)", user_id, exc.response.get("error"))
        return response

    return staff_only


class QuestionRateLimiter:
    """At most N questions per user per rolling minute.

    Counts turns already logged (shared by every replica) plus questions this process accepted
    but has not logged yet, so a burst from one user is limited before any answer exists.
    """

    WINDOW = timedelta(minutes=1)

    def __init__(
        self,
        store: ConversationStore,
        per_minute: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.per_minute = per_minute
        self.clock = clock
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()

    def try_acquire(self, user_id: str) -> bool:
        with self._lock:
            recent = self.store.questions_since(user_id, self.clock() - self.WINDOW)
            if recent + self._pending[user_id] >= self.per_minute:
                return False
            self._pending[user_id] += 1
            return True

    def release(self, user_id: str) -> None:
        """Call once the accepted question is logged (or failed), so it is counted only once."""
        with self._lock:
            self._pending[user_id] -= 1
            if self._pending[user_id] <= 0:
                del self._pending[user_id]
