"""How expert entries reach the domain model's prompt, and what the answer may then claim.

One function builds the served prompt, so training (which must see the prompt it will be
served with) and evaluation use the very same format. The entries go into the system message:
a small model copies scaffolding from the user turn ("Question: … Answer: …") far more than
from its instructions.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.llm.guard import limit_length
from bot.memory.index import MemoryHit

GROUNDING_HEADER = (
    "Our plant experts already answered these similar questions. Use what applies to the "
    "customer's question and ignore the rest; do not mention these notes."
)


def grounded_messages(
    system_prompt: str, question: str, hits: Sequence[MemoryHit], answer_chars: int = 700
) -> list[dict[str, str]]:
    """The chat messages the domain model is served: system prompt (+ entries), then the question."""
    system = system_prompt
    if hits:
        notes = "\n".join(
            f"- Question: {hit.entry.question}\n"
            f"  Expert answer: {limit_length(' '.join(hit.entry.answer.split()), answer_chars)}"
            for hit in hits
        )
        system = f"{system_prompt}\n\n{GROUNDING_HEADER}\n{notes}"
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]

