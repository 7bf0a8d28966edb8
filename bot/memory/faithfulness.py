"""Is a generated plant-care answer backed by the expert entries it was given?

`domain.model_answers = "checked"` shows the model's words only when the entries carry them:
every number it states ("every two to four days", "10-13 °C") appears in an entry, every plant it
names is the question's or an entry's (a Masdevallia answer that drifts to "the Venus flytrap
family" is refused), and most of its content words are the entries' own. Measured on the bundled
135M model (docs/benchmarks/domain_answers.md) almost nothing it writes passes, which is the
point: a capable model's answers pass, and `supportbot eval` shows how often they are right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.glossary import Glossary
from bot.memory.matching import _covered, content_words

MIN_SUPPORTED_SHARE = 0.7
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_NUMBER_WORDS = frozenset("two three four five six seven eight nine ten twelve fifteen twenty thirty".split())


def _numbers(text: str) -> set[str]:
    words = {w for w in re.findall(r"[a-z]+", text.lower()) if w in _NUMBER_WORDS}
    return set(_NUMBER.findall(text)) | words


def supported_share(answer: str, question: str, entries: Sequence[str], glossary: Glossary) -> float:
    """Share (0..1) of the answer's content words that the question or the entries use."""
    words = content_words(answer)
    if not words:
        return 0.0
    known = content_words(question + "\n" + "\n".join(entries))
    return round(sum(_covered(word, known) for word in words) / len(words), 4)


def unsupported_claims(answer: str, question: str, entries: Sequence[str], glossary: Glossary) -> str:
    """What the answer claims that neither the question nor the entries say ("" when nothing)."""
    if not entries:
        return "no expert entry was given to check it against"
    source = question + "\n" + "\n".join(entries)
    invented = sorted(_numbers(answer) - _numbers(source))
    if invented:
        return f"numbers not in the entries: {', '.join(invented[:5])}"
    plants = sorted(glossary.plants_in(answer) - glossary.plants_in(source))
    if plants:
        return f"plants not in the question or the entries: {', '.join(plants[:5])}"
    share = supported_share(answer, question, entries, glossary)
    if share < MIN_SUPPORTED_SHARE:
        return f"only {share:.0%} of its words are in the entries (needs {MIN_SUPPORTED_SHARE:.0%})"
    return ""
