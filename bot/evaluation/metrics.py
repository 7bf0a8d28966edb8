"""Answer-quality metrics as small pure functions, so the report and the training gate agree.

Tokens are lower-cased word characters: punctuation and case never decide whether an answer
matched its reference. ROUGE-L is our own LCS implementation (F1 of LCS precision and recall),
so the numbers do not move when a third-party package changes its tokenizer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from bot.llm.guard import GuardPolicy, degenerate_reason, repeated_ngram_ratio

_TOKEN = re.compile(r"\w+", re.UNICODE)

# The serving guard's defaults ([domain] degenerate_ngram_size / degenerate_ngram_ratio).
DEGENERATE_NGRAM = GuardPolicy().degenerate_ngram_size
DEGENERATE_THRESHOLD = GuardPolicy().degenerate_ngram_ratio


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style bag-of-tokens F1; two empty texts agree (1.0), one empty text scores 0."""
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“'(\[$€£])")


def first_sentence(text: str) -> str:
    """The first line's first sentence: what a customer reads before deciding to read on."""
    line = text.strip().split("\n", 1)[0]
    return _SENTENCE_END.split(line, maxsplit=1)[0].strip()


def states_key_fact(answer: str, key_facts: Sequence[str]) -> bool:
    """Whether the answer's first sentence states one of the key facts ("$3.50", "30 days", "do not ship").

    Compared as token sequences, so punctuation and case do not matter ("$24.95" matches "$24.95.").
    """
    sentence = tokenize(first_sentence(answer))
    for fact in key_facts:
        wanted = tokenize(fact)
        if wanted and any(sentence[i : i + len(wanted)] == wanted for i in range(len(sentence) - len(wanted) + 1)):
            return True
    return False


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Longest common subsequence by dynamic programming, two rows of memory."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token_a in a:
        current = [0]
        for j, token_b in enumerate(b, start=1):
            if token_a == token_b:
                current.append(previous[j - 1] + 1)
            else:
                current.append(max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: rewards the reference's words in the reference's order."""
    pred, ref = tokenize(prediction), tokenize(reference)
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def degenerate_ratio(text: str, n: int = DEGENERATE_NGRAM) -> float:
    """Share of the text's word n-grams that repeat an earlier one (0 = no repeats, →1 = a loop).

    A fine-tuned model that loops ("Genetic Testing Registry: …" over and over) can still
    share many words with the reference; this catches it so the evaluation counts it as a
    failure. It is the domain model's own guard measure, so "degenerate" means the same thing
    in the report as at serving time. Texts shorter than n words score 0.
    """
    return repeated_ngram_ratio(text, n)


def is_degenerate(text: str, threshold: float = DEGENERATE_THRESHOLD) -> bool:
    """The serving guard's verdict (`bot.llm.guard.degenerate_reason`) at this n-gram limit."""
    return bool(degenerate_reason(text, GuardPolicy(degenerate_ngram_ratio=threshold)))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) without pulling numpy in."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
