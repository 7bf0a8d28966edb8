"""Turn the bytes of one knowledge file into a titled document made of headed sections.

Each format keeps its structure (Markdown and HTML headings, PDF pages) because a chunk is
only findable and citable when we know which heading it sits under. Parsing works on bytes
the caller already read and hashed, so the index never describes a different file version
than the one it fingerprinted. Anything we cannot read raises `DocumentError` with a reason
an ops person can act on; the indexer skips that file and keeps going.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from bot.errors import BotError

log = logging.getLogger(__name__)

MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown"}
TEXT_SUFFIXES = {".txt", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUPPORTED_SUFFIXES = MARKDOWN_SUFFIXES | TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES

FRONT_MATTER_KEYS = ("title", "url", "updated", "tags")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_ATX_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^(```|~~~)")


class DocumentError(BotError):
    """A knowledge file that cannot be indexed; the message says why and what to do."""


@dataclass(frozen=True)
class Section:
    """Body text under one heading trail (outermost heading first)."""

    trail: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    path: str  # relative to the knowledge folder, POSIX separators: stable across machines
    title: str
    sections: list[Section]
    url: str = ""
    updated: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


def is_supported(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in SUPPORTED_SUFFIXES


def title_from_path(path: str) -> str:
    """`arrival-guarantee.md` -> `Arrival guarantee`: a readable citation when nothing better exists."""
    stem = PurePosixPath(path).stem.replace("_", " ").replace("-", " ").strip()
    return (stem[:1].upper() + stem[1:]) if stem else path


def parse_document(path: str, data: bytes, *, fallback_updated: str = "") -> ParsedDocument:
    """Parse `data` (the bytes of `path`) by its suffix; raises DocumentError when unreadable."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in PDF_SUFFIXES:
        doc = _parse_pdf(path, data)
    elif suffix in HTML_SUFFIXES:
        doc = _parse_html(path, _decode_text(path, data))
    elif suffix in MARKDOWN_SUFFIXES:
        doc = _parse_markdown(path, _decode_text(path, data))
    elif suffix in TEXT_SUFFIXES:
        doc = _parse_text(path, _decode_text(path, data))
    else:
        raise DocumentError(
            f"{path}: unsupported file type {suffix or '(no suffix)'}; use one of "
            f"{', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
    if not any(s.text.strip() for s in doc.sections):
        raise DocumentError(f"{path}: no text found (empty file, or a scanned PDF without a text layer)")
    if not doc.updated and fallback_updated:
        doc = ParsedDocument(doc.path, doc.title, doc.sections, doc.url, fallback_updated, doc.tags)
    return doc


def _decode_text(path: str, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError(f"{path}: looks like a binary file (NUL bytes), not text; remove it or fix its type")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            f"{path}: not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _front_matter(path: str, text: str) -> tuple[dict[str, Any], str]:
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise DocumentError(f"{path}: front matter is not valid YAML ({first}); fix the block between the --- lines") from None
    if not isinstance(meta, dict):
        raise DocumentError(f"{path}: front matter must be key: value pairs (title, url, updated, tags)")
    unknown = sorted(str(k) for k in meta if k not in FRONT_MATTER_KEYS)
    if unknown:
        log.debug("%s: front matter keys %s are ignored", path, unknown)
    return meta, text[match.end() :]


def _meta_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value).strip()


def _meta_tags(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        items = [str(value)]
    return tuple(t.strip() for t in items if t.strip())


def _parse_markdown(path: str, text: str) -> ParsedDocument:
    meta, body = _front_matter(path, text)
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    lines: list[str] = []
    first_h1 = ""
    in_fence = False

    def flush() -> None:
        content = "\n".join(lines).strip()
        if content:
            sections.append(Section(tuple(h for _, h in trail), content))
        lines.clear()

    for line in body.split("\n"):
        if _FENCE.match(line.strip()):
            in_fence = not in_fence
        heading = None if in_fence else _ATX_HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        flush()
        level, name = len(heading.group(1)), heading.group(2).strip()
        if level == 1 and not first_h1:
            first_h1 = name
        while trail and trail[-1][0] >= level:
            trail.pop()
        trail.append((level, name))
    flush()
    title = _meta_str(meta.get("title")) or first_h1 or title_from_path(path)
    # The document title already prefixes every chunk; repeating it as the first heading adds noise.
    sections = [
        Section(s.trail[1:] if s.trail and s.trail[0] == title else s.trail, s.text) for s in sections
    ]
    return ParsedDocument(
        path=path,
        title=title,
        sections=sections,
        url=_meta_str(meta.get("url")),
        updated=_meta_str(meta.get("updated")),
        tags=_meta_tags(meta.get("tags")),
    )


def _parse_text(path: str, text: str) -> ParsedDocument:
    meta, body = _front_matter(path, text)
    return ParsedDocument(
        path=path,
        title=_meta_str(meta.get("title")) or title_from_path(path),
        sections=[Section((), body.strip())],
        url=_meta_str(meta.get("url")),
        updated=_meta_str(meta.get("updated")),
        tags=_meta_tags(meta.get("tags")),
    )


_HTML_BLOCKS = ("p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "figcaption")
_HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HTML_DROP = ("script", "style", "noscript", "template", "nav", "header", "footer", "form", "svg")


def _parse_html(path: str, text: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")

    def meta_content(*names: str) -> str:
        for name in names:
            tag = soup.find("meta", attrs={"name": name}) or soup.find("meta", attrs={"property": name})
            if tag is not None and tag.get("content"):
                return str(tag["content"]).strip()
        return ""

    canonical = soup.find("link", rel="canonical")
    url = meta_content("url", "og:url") or (str(canonical["href"]) if canonical and canonical.get("href") else "")
    updated = meta_content("updated", "last-modified", "dcterms.modified", "article:modified_time")
    tags = _meta_tags(meta_content("tags", "keywords"))
    head_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    body = soup.body or soup
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    first_h1 = ""

    def flush() -> None:
        content = "\n\n".join(paragraphs).strip()
        if content:
            sections.append(Section(tuple(h for _, h in trail), content))
        paragraphs.clear()

    wanted = set(_HTML_BLOCKS) | set(_HTML_HEADINGS)
    for element in body.find_all(list(wanted)):
        if any(parent.name in wanted for parent in element.parents):
            continue  # its text is already part of the enclosing block
        words = element.get_text(" ", strip=True)
        if not words:
            continue
        if element.name in _HTML_HEADINGS:
            flush()
            level = int(element.name[1])
            if level == 1 and not first_h1:
                first_h1 = words
            while trail and trail[-1][0] >= level:
                trail.pop()
            trail.append((level, words))
        else:
            paragraphs.append(f"- {words}" if element.name == "li" else words)
    flush()
    if not sections:  # text outside block elements (a bare <div> page): keep it rather than lose it
        loose = "\n".join(line.strip() for line in body.get_text("\n").split("\n") if line.strip())
        sections = [Section((), loose)] if loose else []
    title = head_title or first_h1 or title_from_path(path)
    sections = [
        Section(s.trail[1:] if s.trail and s.trail[0] == title else s.trail, s.text) for s in sections
    ]
    return ParsedDocument(path=path, title=title, sections=sections, url=url, updated=_iso_date(updated), tags=tags)


def _iso_date(value: str) -> str:
    """Keep `2025-03-01` from `2025-03-01T10:00:00Z`: citations show the day a policy changed."""
    match = re.match(r"\d{4}-\d{2}-\d{2}", value)
    return match.group(0) if match else value


def _parse_pdf(path: str, data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    if not data.lstrip().startswith(b"%PDF"):
        raise DocumentError(f"{path}: not a PDF file (no %PDF header); re-export it as PDF")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(f"{path}: the PDF is password-protected; export an unprotected copy")
        info = reader.metadata
        title = (str(info.title).strip() if info is not None and info.title else "") or title_from_path(path)
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = _clean_pdf_text(page.extract_text() or "")
            if text:
                sections.append(Section((f"Page {number}",), text))
    except DocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError) as exc:
        raise DocumentError(f"{path}: the PDF cannot be read ({type(exc).__name__}: {exc}); re-export it") from None
    return ParsedDocument(path=path, title=title, sections=sections)


def _clean_pdf_text(text: str) -> str:
    """PDF text comes one visual line at a time; rejoin lines into paragraphs so chunks read naturally."""
    paragraphs: list[str] = []
    current: list[str] = []
    lines = text.replace("\r", "\n").split("\n")
    # A line much shorter than the page's full lines ends its paragraph (or is a heading).
    short = 0.6 * max((len(line.strip()) for line in lines), default=0)
    for line in lines:
        stripped = line.strip()
        if not stripped or (current and len(current[-1]) < short and not current[-1].endswith("-")):
            if current:
                paragraphs.append(" ".join(current))
                current = []
            if not stripped:
                continue
        if current and current[-1].endswith("-") and not current[-1].endswith(" -"):
            current[-1] += stripped  # a code like RR-ORC-1042 broken at a hyphen must stay whole
        else:
            current.append(stripped)
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(p for p in paragraphs if p)
