"""How expert entries reach the domain model's prompt, and what the answer may then claim.

One function builds the served prompt, and training builds every example with it too
(`training.grounding`), so the adapter learns on exactly the prompt it will be served: the
question with the entries the memory retrieves, most of which do not answer it. The entries go
into the system message: a small model copies scaffolding from the user turn ("Question: …
Answer: …") far more than from its instructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from bot.llm.guard import limit_length

if TYPE_CHECKING:  # the index imports chromadb; training data needs only the prompt
    from bot.memory.index import MemoryHit

GROUNDING_HEADER = (
    "Our plant experts already answered these similar questions. Use what applies to the "
    "customer's question and ignore the rest; do not mention these notes."
)


class QuestionAnswer(Protocol):
    @property
    def question(self) -> str: ...

    @property
    def answer(self) -> str: ...


@dataclass(frozen=True)
class Note:
    """An expert entry as a training example carries it (no id or source: the prompt has neither)."""

    question: str
    answer: str


def grounded_messages(
    system_prompt: str, question: str, hits: Sequence[MemoryHit | QuestionAnswer], answer_chars: int = 700
) -> list[dict[str, str]]:
    """The chat messages the domain model is served: system prompt (+ entries), then the question.

    `hits` are memory hits (serving) or bare question/answer notes (training), nearest first."""
    system = system_prompt
    if hits:
        # A MemoryHit carries its entry; a Note / QuestionAnswer is the entry.
        entries = [cast(QuestionAnswer, getattr(hit, "entry", hit)) for hit in hits]
        notes = "\n".join(
            f"- Question: {entry.question}\n"
            f"  Expert answer: {limit_length(' '.join(entry.answer.split()), answer_chars)}"
            for entry in entries
        )
        system = f"{system_prompt}\n\n{GROUNDING_HEADER}\n{notes}"
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]
