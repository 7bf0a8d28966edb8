"""Split a parsed document into chunks that follow its structure.

A chunk never crosses a heading: the heading trail is what makes a chunk about "Refunds"
findable and citable, and a chunk that straddles two sections answers neither well. Inside
a section we pack whole paragraphs up to the target size, fall back to sentences and then
words only for paragraphs that are too long, and repeat the tail of the previous chunk
(the overlap) so a sentence cut at a boundary is still found with its context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.indexing.documents import ParsedDocument

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n+")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Chunk:
    position: int  # order within the document, from 0
    text: str  # the document's own words, shown and quoted to customers
    trail: tuple[str, ...]

    @property
    def heading(self) -> str:
        return HEADING_SEPARATOR.join(self.trail)


def text_for_matching(title: str, heading: str, text: str) -> str:
    """What gets embedded and BM25-indexed: a chunk saying "Symptoms" is only findable with its title."""
    label = f"{title}{HEADING_SEPARATOR}{heading}" if heading else title
    return f"{label}\n\n{text}" if label else text


def chunk_document(doc: ParsedDocument, chunk_size: int, chunk_overlap: int) -> list[Chunk]:
    if chunk_overlap >= chunk_size:
        raise ValueError("chunk_overlap must be smaller than chunk_size")
    chunks: list[Chunk] = []
    for section in doc.sections:
        for text in _chunk_section(section.text, chunk_size, chunk_overlap):
            chunks.append(Chunk(position=len(chunks), text=text, trail=section.trail))
    return chunks


def _chunk_section(text: str, size: int, overlap: int) -> list[str]:
    units = list(_units(text, size))
    out: list[str] = []
    current = ""
    for piece, separator in units:
        candidate = f"{current}{separator}{piece}" if current else piece
        if len(candidate) <= size:
            current = candidate
            continue
        if current:
            out.append(current)
            tail = _overlap_tail(current, overlap)
            current = f"{tail} {piece}" if tail and len(tail) + 1 + len(piece) <= size else piece
        else:
            current = piece
    if current:
        out.append(current)
    return out


def _units(text: str, size: int) -> list[tuple[str, str]]:
    """(piece, separator before it): paragraphs, or sentences/words of an over-long paragraph."""
    units: list[tuple[str, str]] = []
    for paragraph in _PARAGRAPH_BREAK.split(text.strip()):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if len(paragraph) <= size:
            units.append((paragraph, "\n\n"))
            continue
        first = True
        for sentence in _split_sentences(paragraph):
            for piece in _split_words(sentence, size):
                units.append((piece, "\n\n" if first else " "))
                first = False
    return units


def _split_sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(paragraph) if s and s.strip()]


def _split_words(sentence: str, size: int) -> list[str]:
    if len(sentence) <= size:
        return [sentence]
    pieces: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > size:  # a token longer than a chunk (a pasted hash, a URL): hard cut
            if current:
                pieces.append(current)
                current = ""
            pieces.append(word[:size])
            word = word[size:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= size:
            current = candidate
        else:
            pieces.append(current)
            current = word
    if current:
        pieces.append(current)
    return pieces


def _overlap_tail(text: str, overlap: int) -> str:
    """The last `overlap` characters, starting at a sentence (or else word) boundary."""
    if overlap <= 0 or not text:
        return ""
    tail = text[-overlap:]
    if len(tail) == len(text):
        return ""  # the whole previous chunk: repeating it adds nothing
    sentence_start = re.search(r"[.!?]\s+(?=\S)", tail)
    if sentence_start:
        return tail[sentence_start.end() :].strip()
    space = tail.find(" ")
    return tail[space + 1 :].strip() if space >= 0 else ""
