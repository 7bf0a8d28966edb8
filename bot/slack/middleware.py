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
from collections import deque
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

    Two counts, and the larger one decides: questions this process accepted in the window
    (exact, and ahead of the log, so a burst is limited before any answer exists) and turns in
    the shared log (the user's questions on every replica). Taking the larger, not the sum,
    means a question that is both accepted here and already logged is never counted twice.
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
        self._accepted: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def try_acquire(self, user_id: str) -> bool:
        with self._lock:
            now = self.clock()
            accepted = self._accepted.setdefault(user_id, deque())
            while accepted and accepted[0] <= now - self.WINDOW:
                accepted.popleft()
            logged = self.store.questions_since(user_id, now - self.WINDOW)
            if max(logged, len(accepted)) >= self.per_minute:
                if not accepted:
                    del self._accepted[user_id]
                return False
            accepted.append(now)
            return True
