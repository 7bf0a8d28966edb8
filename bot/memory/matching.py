"""When is a stored expert answer the answer to a new question?

Reusing an answer as written is the best a small shop bot can do when it is right (it is the
staff's own words) and the worst when it is not: "What are the symptoms of X?" and "What are
the symptoms of Y?" sit very close in embedding space. So a reuse needs two things: the
questions are close (cosine at or above `memory.verified_threshold`, chosen for precision on
BANKING77), and the new question names nothing the entry's question does not: every content
word of the question (not a stop word; numbers and short codes count) appears in the entry's question,
up to a plural or a shared stem. A paraphrase with a new word goes to grounded generation
instead, with the entry in the prompt, which costs little when the entry was right.

Between the two sits the *similar* answer: customers describe a problem ("white fluffy bugs
between the leaves") where the entry names it ("mealybugs"), so question-to-question cosine
misses paraphrases that an expert would match at a glance. Embedding each entry's question
together with its answer finds them (docs/benchmarks/similar_answers.md); the answer is then
given as written but framed as the team's answer to the entry's question, so a customer can
see what was answered. Its gate is a cosine threshold plus a subject check: a plant, product or
code the question names (a capitalised name, a number, or a name the memory's own questions
use) must be named by the entry's question too, so "root rot in a Haworthia" never gets the
orchid's answer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.memory.index import MemoryHit

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STEM_CHARS = 5  # "watering"/"watered"/"water", "repotting"/"repot": the same subject
# Question scaffolding and function words: different ways to ask, not different subjects.
STOP_WORDS = frozenset(
    """
    a about above after again all also am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't
    down during each even ever few for from further get gets getting got had hadn't has hasn't have
    haven't having he her here hers herself him himself his how i i'd i'm i've if in into is isn't it
    it's its itself just let's like make many me more most much must mustn't my myself need no nor not
    now of off on once one only or other ought our ours ourselves out over own please really same
    shan't she should shouldn't so some such than thank thanks that that's the their theirs them
    themselves then there there's these they they're this those through to too under until up upon
    us very was wasn't way we we're were weren't what what's when where which while who whom why
    will with won't would wouldn't yes yet you you're your yours yourself yourselves tell know
    want wanted anything something thing things still
    """.split()
)


_PUNCTUATION = re.compile(r"[^\w\s'-]+|(?<!\w)['-]|['-](?!\w)")


def canonical_question(text: str) -> str:
    """The form both sides are embedded in: lower case, no punctuation, single spaces.

    MiniLM puts "How often should I water a Masdevallia orchid?" and the same words typed without
    capitals or the question mark only 0.97 apart, below a threshold chosen for precision, so a
    customer's typing style would decide whether the staff's answer is reused."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def content_words(text: str) -> set[str]:
    """Lower-cased words that name something: stop words dropped, possessives folded; numbers and
    two-letter codes kept ("type 1" / "type 2", "IE" / "II" are different subjects)."""
    words = set()
    for token in _WORD.findall(text.lower().replace("\u2019", "'")):
        token = token.split("'", 1)[0]
        if token in STOP_WORDS or not token:
            continue
        if len(token) >= 2 or token.isdigit():
            words.add(token)
    return words


def _covered(word: str, others: set[str]) -> bool:
    if word in others:
        return True
    singular = word[:-1] if word.endswith("s") else word
    return any(o == singular or o.rstrip("s") == singular or
               (len(word) >= STEM_CHARS and len(o) >= STEM_CHARS and o[:STEM_CHARS] == word[:STEM_CHARS])
               for o in others)


def uncovered_words(question: str, entry_question: str) -> list[str]:
    """Content words of `question` that `entry_question` does not contain (what it would ignore)."""
    theirs = content_words(entry_question)
    return sorted(w for w in content_words(question) if not _covered(w, theirs))


_TOKEN = re.compile(r"[A-Za-z0-9][\w'-]*")


def named_subjects(text: str) -> set[str]:
    """Words `text` uses as names, lower-cased: a word with a digit, or a capitalised word that
    does not start a sentence (customers capitalise plant names and products, not problems).
    Two-letter capitals ("OK") are not names."""
    text = text.replace("\u2019", "'")
    names = set()
    for match in _TOKEN.finditer(text):
        token = match.group()
        word = token.lower().split("'", 1)[0]
        if not word or word in STOP_WORDS:
            continue
        before = text[: match.start()].rstrip()
        sentence_start = not before or before[-1] in ".!?:"
        if any(c.isdigit() for c in word) or (token[0].isupper() and len(word) > 2 and not sentence_start):
            names.add(word)
    return names


def _names_covered(word: str, others: set[str]) -> bool:
    # "phal" is a Phalaenopsis: a typed prefix of four letters or more names the same plant.
    return _covered(word, others) or (len(word) >= 4 and any(o.startswith(word) for o in others))


def missing_subjects(question: str, entry_question: str, vocabulary: frozenset[str] = frozenset()) -> list[str]:
    """Names in `question` (its own, or the memory's names in any case) that `entry_question` lacks."""
    names = named_subjects(question) | (content_words(question) & vocabulary)
    theirs = content_words(entry_question)
    return sorted(word for word in names if not _names_covered(word, theirs))


def is_similar_match(question: str, hit: MemoryHit, threshold: float, vocabulary: frozenset[str]) -> bool:
    """Whether the hit's answer may be given, framed as the answer to a similar question."""
    return hit.similarity >= threshold and not missing_subjects(question, hit.entry.question, vocabulary)


def is_verified_match(question: str, hit: MemoryHit, threshold: float) -> bool:
    """Whether the hit's answer may be given, as written, to `question`."""
    return hit.similarity >= threshold and not uncovered_words(question, hit.entry.question)
