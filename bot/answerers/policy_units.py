"""Split a policy chunk into the smallest pieces a customer can read on their own.

A retrieval answer should start with the sentence, list item or table row that answers the
question, not with the section it sits in. This module cuts a chunk's text (the document's own
words, as the indexer stored them) into such units, and records which units lean on a
neighbour, so the answer can keep that neighbour:

- prose is cut into sentences ("$3.50" and "e.g." do not end one);
- a list item is one unit; the sentence introducing the list ("you choose one of:") is noted
  as its context;
- a Markdown table row is one unit rendered with its header row
  ("Zone 3 · Where: Alaska, Hawaii, Puerto Rico · Delivery time: 3-5 business days · Cost: $24.95"),
  because a bare row of cells means nothing;
- a sentence that starts with a pointer back ("This is our warranty…", "For any other reason…")
  depends on the one before it;
- a sentence that narrows a promise ("…only when the return is our mistake", "cannot", "unless")
  is a condition: the answer keeps it when it sits in the same paragraph as a chosen unit.

Pure functions on strings: no model, no index, so they are tested directly and cost microseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

UnitKind = Literal["sentence", "item", "row"]

_BLOCK_BREAK = re.compile(r"\n[ \t]*\n+")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
# A sentence ends at . ! ? (optionally closed by a quote or bracket) before a space and a capital,
# digit, quote or bracket; "$3.50", "5 °C (41 °F)" and "rareroots.example/signup" never match.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]]?\s+(?=[A-Z0-9\"“'(\[$€£])")
_ABBREVIATIONS = frozenset({"e.g.", "i.e.", "etc.", "approx.", "no.", "vs.", "mr.", "mrs.", "ms.", "dr.", "st."})
# Words that point back at the previous sentence: without it the sentence does not say what it is about.
_POINTS_BACK = re.compile(
    r"^(?:this|that|these|those|it|its|they|their|them|such|both|otherwise|instead|however|also|"
    r"then|there|for any other reason|in that case|in this case|if so|if not)\b",
    re.IGNORECASE,
)
# Words that narrow or reverse a promise: a customer who is not told them is told something false.
_CONDITION = re.compile(
    r"\b(?:only (?:when|if|after|before|for|to)|unless|except|excluding|not covered|cannot|can't|"
    r"can no longer|must|otherwise|for any other reason|as long as|provided that|at the customer's request)\b",
    re.IGNORECASE,
)


_HEADING = re.compile(r"^\s{0,3}#{1,6}\s")


@dataclass(frozen=True)
class PolicyUnit:
    """One readable piece of a chunk, in document order.

    `context` is the index of the unit this one cannot be read without (the previous sentence it
    points back to, or the sentence introducing its list), or None.
    """

    index: int
    text: str
    kind: UnitKind
    block: int  # paragraph / list / table number within the chunk: conditions are kept per block
    context: int | None = None
    condition: bool = False


def split_sentences(paragraph: str) -> list[str]:
    """Sentences of one paragraph (line breaks inside it are wrapping, not structure)."""
    text = " ".join(paragraph.split())
    if not text:
        return []
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        last_word = text[start : match.start()].rsplit(" ", 1)[-1].lower()
        if last_word in _ABBREVIATIONS or re.fullmatch(r"[a-z]\.", last_word):
            continue
        closing = match.group(0).rstrip()  # a closing quote or bracket stays with its sentence
        sentences.append(text[start : match.start() + len(closing)].strip())
        start = match.end()
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def render_row(header: list[str], cells: list[str]) -> str:
    """A table row that reads on its own: each cell after its column name, joined by " · ".

    A cell that already starts with its column name ("Zone 3" under "Zone") is not labelled twice.
    """
    parts = []
    for position, cell in enumerate(cells):
        if not cell:
            continue
        name = header[position] if position < len(header) else ""
        if not name or cell.lower().startswith(name.lower()):
            parts.append(cell)
        else:
            parts.append(f"{name}: {cell}")
    return " · ".join(parts)


def looks_like_a_title(line: str) -> bool:
    """A short line with no sentence punctuation on its own ("Support team hours and contact"): a
    heading that a text or PDF file could not mark as one. It names the section; it answers nothing."""
    stripped = line.strip()
    return (len(stripped.split()) <= 8 and not _LIST_ITEM.match(stripped) and not stripped.startswith("|")
            and not re.search(r"[.!?:;]$", stripped) and not re.search(r"\d", stripped))


def is_condition(sentence: str) -> bool:
    return bool(_CONDITION.search(sentence))


def points_back(sentence: str) -> bool:
    return bool(_POINTS_BACK.match(sentence.strip()))


class _UnitList:
    """Units collected in order, with the sentence introducing the next list (if any)."""

    def __init__(self) -> None:
        self.units: list[PolicyUnit] = []
        # The prose unit that ends with ":" right before a list: every item of that list leans on it.
        self.intro: int | None = None

    def add(self, text: str, kind: UnitKind, block: int, context: int | None) -> int:
        self.units.append(PolicyUnit(len(self.units), text, kind, block, context, is_condition(text)))
        return len(self.units) - 1

    def add_table(self, lines: list[str], block: int) -> None:
        header: list[str] = []
        rows = lines
        if len(lines) >= 2 and _TABLE_SEPARATOR.match(lines[1]):
            header, rows = table_cells(lines[0]), lines[2:]
        for line in rows:
            rendered = "" if _TABLE_SEPARATOR.match(line) else render_row(header, table_cells(line))
            if rendered:
                self.add(rendered, "row", block, self.intro)
        self.intro = None

    def add_prose(self, lines: list[str], block: int) -> None:
        previous: int | None = None
        for sentence in split_sentences(" ".join(lines)):
            context = previous if previous is not None and points_back(sentence) else None
            if previous is None and points_back(sentence) and self.units:
                context = self.units[-1].index  # a paragraph's first sentence points at the last one
            previous = self.add(sentence, "sentence", block, context)
        if previous is not None:
            self.intro = previous if self.units[previous].text.endswith(":") else None

    def add_item(self, lines: list[str], block: int) -> None:
        self.add(" ".join(" ".join(lines).split()), "item", block, self.intro)


def split_units(text: str) -> list[PolicyUnit]:
    """The chunk's sentences, list items and table rows (with their header), in order."""
    found = _UnitList()
    for block, raw in enumerate(b for b in _BLOCK_BREAK.split(text.strip()) if b.strip()):
        lines = [line for line in raw.split("\n") if line.strip() and not _HEADING.match(line)]
        if not lines or (len(lines) == 1 and looks_like_a_title(lines[0])):
            continue
        if all(line.lstrip().startswith("|") for line in lines):
            found.add_table(lines, block)
            continue
        prose: list[str] = []
        item: list[str] = []
        for line in lines:
            marker = _LIST_ITEM.match(line)
            if marker:
                if prose:
                    found.add_prose(prose, block)
                    prose = []
                if item:
                    found.add_item(item, block)
                item = [line[marker.end() :]]
            elif item:
                item.append(line)  # a wrapped list item continues on the next line
            else:
                prose.append(line)
        if item:
            found.add_item(item, block)
        if prose:
            found.add_prose(prose, block)
    return found.units
