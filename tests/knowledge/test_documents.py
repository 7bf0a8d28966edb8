"""Every supported format is read with its structure and metadata; unreadable files say why."""

from __future__ import annotations

import pytest

from bot.indexing.chunking import chunk_document, text_for_matching
from bot.indexing.documents import DocumentError, ParsedDocument, Section, parse_document
from tests.knowledge.conftest import REPO
from tests.knowledge.pdfgen import make_pdf

SHIPPING_MD = """---
title: Shipping and delivery
url: https://shop.example/shipping
updated: 2025-09-15
tags: [shipping, live plants]
---

# Shipping and delivery

We ship Monday to Wednesday.

## Zones

Zone 1 takes 1-2 days.

### Canada

Canada takes 4-7 business days.

```
# not a heading inside code
```

## Tracking

You get a tracking number by email.
"""


def test_markdown_front_matter_becomes_citation_metadata() -> None:
    doc = parse_document("policies/shipping.md", SHIPPING_MD.encode())
    assert doc.title == "Shipping and delivery"
    assert doc.url == "https://shop.example/shipping"
    assert doc.updated == "2025-09-15"
    assert doc.tags == ("shipping", "live plants")
    assert doc.path == "policies/shipping.md"


def test_markdown_sections_carry_their_heading_trail() -> None:
    doc = parse_document("shipping.md", SHIPPING_MD.encode())
    trails = {s.trail: s.text for s in doc.sections}
    assert trails[()] == "We ship Monday to Wednesday."  # under the title heading, which is not repeated
    assert trails[("Zones",)] == "Zone 1 takes 1-2 days."
    assert trails[("Zones", "Canada")].startswith("Canada takes 4-7 business days.")
    assert "# not a heading inside code" in trails[("Zones", "Canada")]
    assert trails[("Tracking",)] == "You get a tracking number by email."


def test_markdown_without_front_matter_takes_title_from_h1_or_file_name() -> None:
    assert parse_document("x.md", b"# Gift cards\n\nThey never expire.").title == "Gift cards"
    untitled = parse_document("arrival-guarantee.md", b"Plants arrive alive.")
    assert untitled.title == "Arrival guarantee"
    assert untitled.updated == ""


def test_missing_updated_falls_back_to_the_given_file_date() -> None:
    doc = parse_document("a.md", b"Plants arrive alive.", fallback_updated="2025-01-02")
    assert doc.updated == "2025-01-02"
    dated = parse_document("b.md", b"---\nupdated: 2024-05-06\n---\nText.", fallback_updated="2025-01-02")
    assert dated.updated == "2024-05-06"


def test_plain_text_keeps_paragraphs_and_is_titled_by_file_name() -> None:
    doc = parse_document("contact-hours.txt", b"Support hours\r\n\r\nMonday to Friday, 8:00 to 17:00.\r\n")
    assert doc.title == "Contact hours"
    assert doc.sections == [Section((), "Support hours\n\nMonday to Friday, 8:00 to 17:00.")]


def test_html_uses_headings_and_meta_and_drops_navigation() -> None:
    doc = parse_document("gift-cards.html", (REPO / "knowledge" / "gift-cards.html").read_bytes())
    assert doc.title == "Gift cards"
    assert doc.url == "https://rareroots.example/help/gift-cards"
    assert doc.updated == "2025-06-10"
    by_trail = {s.trail: s.text for s in doc.sections}
    assert "amounts of $25, $50, $100 and $200" in by_trail[()]
    assert "- Gift cards never expire." in by_trail[("Expiry and refunds",)]
    assert all("Home" not in s.text and "©" not in s.text for s in doc.sections)


def test_pdf_pages_become_sections_and_codes_survive_line_breaks() -> None:
    data = make_pdf(
        [["Wholesale terms", "", "Approved accounts pay 40% below retail prices on every", "plant we sell.",
          "Order the bark mix as RR-MIX-", "0007 in bulk."], ["Invoices are due net 30."]],
        title="Wholesale terms",
    )
    doc = parse_document("wholesale.pdf", data)
    assert doc.title == "Wholesale terms"
    assert [s.trail for s in doc.sections] == [("Page 1",), ("Page 2",)]
    assert "Approved accounts pay 40% below retail prices on every plant we sell." in doc.sections[0].text
    assert "RR-MIX-0007" in doc.sections[0].text
    assert doc.sections[1].text == "Invoices are due net 30."


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.txt", b"abc\x00\x01\x02binary", "binary"),
        ("latin1.md", "Preis: 5 \u20ac f\u00fcr Pflanzen".encode("latin-1", errors="replace") + b"\xff\xfe", "UTF-8"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage", "PDF"),
        ("fake.pdf", b"just text pretending", "not a PDF"),
        ("bad-front.md", b"---\ntitle: [unclosed\n---\nBody", "front matter"),
        ("empty.md", b"---\ntitle: Empty\n---\n\n", "no text"),
        ("slides.pptx", b"PK\x03\x04", "unsupported"),
    ],
)
def test_unreadable_files_raise_an_error_naming_the_file(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document(name, data)
    assert name in str(caught.value)
    assert reason.lower() in str(caught.value).lower()


def _doc(*sections: Section) -> ParsedDocument:
    return ParsedDocument(path="doc.md", title="Doc", sections=list(sections))


def test_chunks_respect_size_and_never_cross_a_heading() -> None:
    sentences = " ".join(f"Sentence number {i} talks about watering orchids in winter." for i in range(40))
    doc = _doc(Section(("Long",), sentences), Section(("Short",), "One short paragraph."))
    chunks = chunk_document(doc, chunk_size=300, chunk_overlap=60)
    assert all(len(c.text) <= 300 for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert chunks[-1].trail == ("Short",) and chunks[-1].text == "One short paragraph."
    assert all(c.trail == ("Long",) for c in chunks[:-1])
    rebuilt = " ".join(c.text for c in chunks[:-1])
    for i in range(40):  # nothing lost
        assert f"Sentence number {i} " in rebuilt


def test_consecutive_chunks_overlap_so_cut_sentences_keep_context() -> None:
    text = " ".join(f"Rule {i} says plants ship on day {i}." for i in range(30))
    chunks = chunk_document(_doc(Section((), text)), chunk_size=200, chunk_overlap=60)
    assert len(chunks) > 2
    for before, after in zip(chunks, chunks[1:], strict=False):
        first_sentence = after.text.split(". ")[0]
        assert first_sentence in before.text  # the new chunk starts by repeating the previous tail


def test_paragraphs_are_packed_whole_when_they_fit() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 20 for i in range(6)]
    chunks = chunk_document(_doc(Section((), "\n\n".join(paragraphs))), chunk_size=300, chunk_overlap=0)
    for chunk in chunks:
        for part in chunk.text.split("\n\n"):
            assert part.strip() in [p.strip() for p in paragraphs]


def test_matching_text_names_the_document_and_heading() -> None:
    assert text_for_matching("Returns", "Refunds", "Within 5 days.") == "Returns > Refunds\n\nWithin 5 days."
    assert text_for_matching("Returns", "", "Within 5 days.") == "Returns\n\nWithin 5 days."
