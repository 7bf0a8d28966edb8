"""How a similar answer is shown, and how the frame comes off again.

A similar answer is an expert entry's answer given to a question it was not written for, so the
customer is told which question it answers. Once staff confirm it for the customer's question,
it is that question's answer: the memory entry and the training example keep it unframed.
"""

from __future__ import annotations

SIMILAR_FRAME = "Our team answered a similar question, \u201c{question}\u201d:"
_FRAME_START, _FRAME_END = SIMILAR_FRAME.split("{question}")


def similar_answer_text(entry_question: str, entry_answer: str) -> str:
    """The entry's answer after one line naming the question it was written for."""
    question = " ".join(entry_question.split())
    return f"{SIMILAR_FRAME.format(question=question)}\n\n{entry_answer.strip()}"


def without_similar_frame(text: str) -> str:
    """`text` without a similar answer's frame (unchanged when it has none)."""
    if text.startswith(_FRAME_START):
        end = text.find(_FRAME_END + "\n\n")
        if end != -1:
            return text[end + len(_FRAME_END) + 2:].strip()
    return text
