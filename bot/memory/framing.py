"""How a similar answer or an excerpt is shown, and how the frame comes off again.

A similar answer is an expert entry's answer given to a question it was not written for, so the
customer is told which question it answers; an excerpt quotes the sentences of an entry that
answer the question, and names the entry too. Once staff confirm it for the customer's question,
it is that question's answer: the memory entry and the training example keep it unframed.
"""

from __future__ import annotations

SIMILAR_FRAME = "Our team answered a similar question, \u201c{question}\u201d:"
EXCERPT_FRAME = "From our team's answer to \u201c{question}\u201d:"
_FRAMES = [frame.split("{question}") for frame in (SIMILAR_FRAME, EXCERPT_FRAME)]


def similar_answer_text(entry_question: str, entry_answer: str) -> str:
    """The entry's answer after one line naming the question it was written for."""
    question = " ".join(entry_question.split())
    return f"{SIMILAR_FRAME.format(question=question)}\n\n{entry_answer.strip()}"


def excerpt_text(entry_question: str, sentences: str) -> str:
    """Sentences quoted from an entry's answer, after one line naming the entry's question."""
    question = " ".join(entry_question.split())
    return f"{EXCERPT_FRAME.format(question=question)}\n\n{sentences.strip()}"


def without_similar_frame(text: str) -> str:
    """`text` without a similar answer's or an excerpt's frame (unchanged when it has none)."""
    for start, end_mark in _FRAMES:
        if text.startswith(start):
            end = text.find(end_mark + "\n\n")
            if end != -1:
                return text[end + len(end_mark) + 2:].strip()
    return text
