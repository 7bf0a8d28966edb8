"""Training examples in the served format: each question with the expert entries serving retrieves.

The domain answerer puts the nearest expert entries into the prompt (`memory.ground_k` of them,
if at least `memory.ground_min_similarity` similar). An adapter trained on bare question →
answer pairs has never seen such a prompt, and on MedQuAD it did worse with its entries than
without them. Retrieval-augmented fine-tuning (RAFT, Zhang et al. 2024) trains with the
retrieved material in the prompt, including entries that do not answer, so the model learns to
use the one that applies and ignore the rest.

The example's own entry is never shown: serving answers a question that has its own entry as a
verified answer without the model, so the model must learn what to do with the *others*:
  - an entry that answers the same question (another source, a paraphrase, a staff correction):
    shown to `training.grounded_answer_share` of the examples that have one, so the model learns
    to rely on it;
  - otherwise only the nearest entries that do not answer it (distractors), so the model learns
    to answer from what it knows and not to copy the neighbouring plant's care.
Which examples get the answering entry is decided by a hash of the question and the seed, so
the same data gives the same prompts (and resumes the same fine-tune).
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bot.config import Settings
from bot.memory.grounding import Note
from bot.memory.matching import canonical_question
from training.dataset import Example

log = logging.getLogger(__name__)

# Cosine between two questions above which they ask the same thing in other words (MiniLM:
# paraphrases of one shop question score 0.9+, two questions about one plant 0.6-0.85).
PARAPHRASE_SIMILARITY = 0.9

EmbedQuestions = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class MemoryNote:
    """One entry of the memory the examples are grounded in."""

    question: str
    answer: str
    turn_id: int | None = None


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def _is_own(example: Example, note: MemoryNote) -> bool:
    if example.turn_id is not None and note.turn_id == example.turn_id:
        return True
    return canonical_question(note.question) == canonical_question(example.question) and _same_text(
        note.answer, example.answer
    )


def _show_answering(question: str, seed: int, share: float) -> bool:
    digest = hashlib.sha256(f"{seed}\x1f{canonical_question(question)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


class Grounder:
    """Chooses, for each example, the entries its served prompt would hold (its own excluded)."""

    def __init__(
        self, notes: Sequence[MemoryNote], embed: EmbedQuestions, *, k: int, min_similarity: float,
        answer_share: float, seed: int = 0,
    ) -> None:
        self.notes = list(notes)
        self.embed = embed
        self.k = k
        self.min_similarity = min_similarity
        self.answer_share = answer_share
        self.seed = seed
        self._vectors = embed([n.question for n in self.notes]) if self.notes else np.zeros((0, 1))
        self.stats: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings, notes: Sequence[MemoryNote], embed: EmbedQuestions) -> Grounder:
        mem, cfg = settings.memory, settings.training
        return cls(notes, embed, k=mem.ground_k, min_similarity=mem.ground_min_similarity,
                   answer_share=cfg.grounded_answer_share, seed=cfg.seed)

    def ground(
        self, examples: Sequence[Example], *, answer_share: float | None = None, hide: Sequence[Example] = ()
    ) -> list[Example]:
        """The examples with their grounding set. `answer_share` 1.0 (evaluation) shows every
        answering entry, as serving would. The entries of `hide` (the held-out examples, when
        grounding the training split) are never shown: a held-out answer in a training prompt
        would be learnt and flatter the candidate at the gate."""
        share = self.answer_share if answer_share is None else answer_share
        if not examples or not self.notes or self.k <= 0:
            return list(examples)
        hidden = {j for j, note in enumerate(self.notes) if any(_is_own(h, note) for h in hide)}
        vectors = self.embed([ex.question for ex in examples])
        sims = vectors @ self._vectors.T
        out = []
        for row, ex in enumerate(examples):
            order = np.argsort(-sims[row], kind="stable")
            answering, others = [], []
            for j in order:
                note, sim = self.notes[int(j)], float(sims[row, j])
                if int(j) in hidden or _is_own(ex, note):
                    continue
                if sim >= PARAPHRASE_SIMILARITY or canonical_question(note.question) == canonical_question(
                    ex.question
                ):
                    answering.append((note, sim))
                elif sim >= self.min_similarity:
                    others.append((note, sim))
            shown = bool(answering) and _show_answering(ex.question, self.seed, share)
            pool = sorted([*(answering[:1] if shown else []), *others], key=lambda pair: -pair[1])[: self.k]
            self.stats["with_answering_entry" if shown else
                       ("answering_entry_withheld" if answering else "no_answering_entry")] += 1
            if not pool:
                self.stats["without_entries"] += 1
            out.append(replace(ex, grounding=tuple(Note(n.question, n.answer) for n, _ in pool)))
        return out


def memory_notes(settings: Settings, store: object | None) -> list[MemoryNote]:
    """The entries the expert memory holds now (seed file and staff labels), as serving sees them."""
    from bot.memory.entries import desired_entries, seed_entries

    if store is None:
        entries = seed_entries(settings.training.seed_dataset)
    else:
        entries = list(desired_entries(settings, store).values())  # type: ignore[arg-type]
    return [MemoryNote(e.question, e.answer, e.turn_id) for e in entries if e.route == "domain"]


def question_embedder(model: Any) -> EmbedQuestions:
    """Questions embedded as the memory embeds them (canonical form, normalised MiniLM vectors)."""
    from bot.indexing.embedding import embed

    return lambda texts: np.asarray(embed(model, [canonical_question(t) for t in texts]), dtype=np.float32)
