"""Which expert entries exist: read from the seed file and the staff labels in the log.

An entry is a question and the answer the shop stands behind for it. The rules are the staff's
intent, in one place: a correction (verdict incorrect with a corrected answer) is the answer; an
answer marked correct is the answer as the bot gave it; the newest label on a turn decides, and
a retraction withdraws it. Policy (retrieval) answers are left out unless the shop opts in,
because a corrected price or deadline goes stale when the policy file changes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import Settings
from bot.memory.framing import without_similar_frame

if TYPE_CHECKING:
    from bot.conversation_log import ConversationStore, LabeledTurn

log = logging.getLogger(__name__)

SOURCE_SEED = "seed"
SOURCE_CORRECTION = "correction"
SOURCE_CONFIRMED = "confirmed"
# When two entries ask the same question, the staff's newer word wins over the seed file.
SOURCE_PRIORITY = {SOURCE_CORRECTION: 0, SOURCE_CONFIRMED: 1, SOURCE_SEED: 2}


@dataclass(frozen=True)
class ExpertEntry:
    entry_id: str  # "seed:<hash of the question>" or "turn:<turn id>"
    question: str
    answer: str
    source: str  # seed | correction | confirmed
    route: str = "domain"
    turn_id: int | None = None
    staff_user_id: str = ""

    @property
    def content_hash(self) -> str:
        raw = "\x1f".join((self.question, self.answer, self.source, self.route, self.staff_user_id))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def metadata(self) -> dict[str, str | int]:
        return {
            "answer": self.answer,
            "source": self.source,
            "route": self.route,
            "turn_id": self.turn_id if self.turn_id is not None else -1,
            "staff_user_id": self.staff_user_id,
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_stored(cls, entry_id: str, question: str, meta: dict) -> ExpertEntry:
        turn_id = int(meta.get("turn_id", -1))
        return cls(
            entry_id=entry_id,
            question=question,
            answer=str(meta.get("answer", "")),
            source=str(meta.get("source", "")),
            route=str(meta.get("route", "domain")),
            turn_id=turn_id if turn_id >= 0 else None,
            staff_user_id=str(meta.get("staff_user_id", "")),
        )


def seed_entries(path: Path) -> list[ExpertEntry]:
    """The seed file's pairs; a missing or broken file gives none (and says why), never a crash."""
    from training.dataset import DatasetError, read_seed_dataset

    try:
        examples = read_seed_dataset(path)
    except DatasetError as exc:
        log.warning("expert memory: no seed entries (%s)", exc)
        return []
    entries: dict[str, ExpertEntry] = {}
    for example in examples:
        key = hashlib.sha256(" ".join(example.question.lower().split()).encode()).hexdigest()[:16]
        entries[key] = ExpertEntry(f"seed:{key}", example.question, example.answer, SOURCE_SEED)
    return list(entries.values())


def entry_from_label(turn: LabeledTurn, *, reuse_policy: bool) -> ExpertEntry | None:
    """The entry a staff label vouches for, or None when it vouches for nothing reusable."""
    route = turn.correct_route or turn.route
    if route == "escalate" or (route == "retrieval" and not reuse_policy):
        return None
    if turn.verdict == "incorrect":
        if not turn.corrected_answer.strip():
            return None  # "wrong" without the right answer: nothing to say instead
        answer, source = turn.corrected_answer.strip(), SOURCE_CORRECTION
    elif turn.verdict == "correct":
        answer, source = without_similar_frame(turn.answer).strip(), SOURCE_CONFIRMED
    else:
        return None
    question = turn.learn_question.strip()
    if not answer or not question:
        return None
    return ExpertEntry(f"turn:{turn.turn_id}", question, answer, source, route, turn.turn_id,
                       turn.staff_user_id)


def label_entries(store: ConversationStore, *, reuse_policy: bool) -> list[ExpertEntry]:
    entries = (entry_from_label(turn, reuse_policy=reuse_policy) for turn in store.labeled_turns())
    return [entry for entry in entries if entry is not None]


def desired_entries(settings: Settings, store: ConversationStore) -> dict[str, ExpertEntry]:
    """Every entry the memory should hold now, by id."""
    return entries_from(settings.training.seed_dataset, store, reuse_policy=settings.memory.reuse_policy_corrections)


def entries_from(seed_file: Path, store: ConversationStore, *, reuse_policy: bool) -> dict[str, ExpertEntry]:
    entries = seed_entries(seed_file)
    entries += label_entries(store, reuse_policy=reuse_policy)
    return {entry.entry_id: entry for entry in entries}
