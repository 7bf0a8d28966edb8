"""Keep the domain model from inventing contact points: links, e-mails, phones, prices, codes.

A small model asked about a blackening Nepenthes recommended "a pot cleaner like 1098" and linked
`https://www.petcoplantsolutions.com/tips_and_tricks_`, a site that has nothing to do with the
shop (issue #16). A customer acts on such a string: they open the link, call the number, order
the code. So a generated answer may only repeat a contact point that the shop itself wrote
somewhere the answer may draw from (the knowledge base, the expert entries the model was given,
config strings). Every sentence, list item or line that carries any other one is removed; when
too little is left, `DegenerateAnswer` makes the pipeline fall back as for any unusable answer.

Contact points are compared in a normalized form, so "https://www.Example.com/a/" and
"example.com/a" are one link and "(503) 555-0123" matches "+1 503 555 0123":

- link: `host/path` (scheme, `www.`, query, fragment and a trailing slash dropped, host lowercased);
- e-mail: lowercased `name@host`;
- phone: `tel:` and its digits (at least 7);
- price: currency symbol and amount (`$24.95`, `€5`; "24.95 USD" and "5 dollars" are written so);
- code: an order/SKU-like token, uppercased (`RR-ORC-1042`; "SKU 1098", "#1098", "like 1098" → `1098`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from bot.llm.guard import WORD_RE, DegenerateAnswer

log = logging.getLogger(__name__)

# Top-level domains a bare "name.tld" may end in; a longer list would turn file names,
# abbreviations and sentences joined without a space ("README.md", "e.g.", "the roots.It") into
# links, so country codes that are English words (in, it, at, be, no, us) are left out, and a
# bare domain's ending must be written in lowercase. A name with a path ("x.garden/care"), a
# scheme or "www." is a link whatever its ending.
BARE_DOMAIN_TLDS = (
    "com|net|org|edu|gov|info|biz|io|co|app|dev|shop|store|online|site|xyz|garden|plants|"
    "example|uk|ca|au|nz|ie|de|fr|nl|eu|ch|se|dk|fi|pl|jp|cn|br|mx"
)
URL_CHARS = r"[^\s<>\"'`|\[\]{}]"
SCHEME_URL_RE = re.compile(rf"\b(?:https?|ftp)://{URL_CHARS}+", re.IGNORECASE)
EMAIL_RE = re.compile(r"\b[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
DOMAIN = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
WWW_URL_RE = re.compile(rf"\bwww\.(?:{DOMAIN}\.)+[a-z]{{2,}}(?:/{URL_CHARS}*)?", re.IGNORECASE)
BARE_URL_RE = re.compile(
    rf"(?<![\w@./-])[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?(?:\.{DOMAIN})*"
    rf"(?:\.(?:{BARE_DOMAIN_TLDS})\b(?:/{URL_CHARS}*)?|\.[a-z]{{2,}}/{URL_CHARS}+)",
    re.IGNORECASE,
)
TRAILING_PUNCTUATION = ".,;:!?'\")]}*"

# Phones: "+44 20 7946 0958", "+1 (503) 555-0123", "(503) 555-0123", "503.555.0123",
# "1-800-555-0199", any 7+ digit number right after a word that introduces a number to call,
# and any bare run of 10-15 digits.
INTERNATIONAL_PHONE_RE = re.compile(r"(?<![\w+])\+\d[\d\s().-]{5,20}\d")
US_PHONE_RE = re.compile(r"(?<![\w+-])(?:1[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])")
CALL_PHONE_RE = re.compile(
    r"\b(?:call|phone|telephone|tel|fax|dial|whatsapp|sms)\b\.?:?\s*(?:(?:us|them)\s+)?(?:at|on)?\s*"
    r"(?P<number>\d[\d\s().-]{5,18}\d)",
    re.IGNORECASE,
)
# A bare run of 10+ digits is a phone number far more often than a quantity (those carry commas).
LONG_DIGIT_RUN_RE = re.compile(r"(?<![\w.,+-])\d{10,15}(?![\w.,-]?\d)")
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15

# Prices: a currency sign or code before the amount, or a currency word or code after it.
# "pounds" is left out on purpose: in plant care it is a weight ("a 5 pound bag").
AMOUNT = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
CURRENCY_SIGNS = {
    "$": "$",
    "US$": "$",
    "USD": "$",
    "€": "€",
    "EUR": "€",
    "£": "£",
    "GBP": "£",
    "¥": "¥",
    "JPY": "¥",
}
CURRENCY_WORDS = {
    "usd": "$",
    "dollar": "$",
    "dollars": "$",
    "bucks": "$",
    "eur": "€",
    "euro": "€",
    "euros": "€",
    "gbp": "£",
    "jpy": "¥",
    "yen": "¥",
}
PRICE_BEFORE_RE = re.compile(rf"(?P<cur>US\$|\$|€|£|¥|\b(?:USD|EUR|GBP|JPY)\b)\s?(?P<amount>{AMOUNT})(?!\d)")
PRICE_AFTER_RE = re.compile(
    rf"(?<![\w.,])(?P<amount>{AMOUNT})\s?(?P<cur>USD|EUR|GBP|JPY|dollars?|bucks|euros?|yen)\b",
    re.IGNORECASE,
)
CENTS_RE = re.compile(r"(?<![\w.,])(?P<amount>\d{1,2})\s?cents?\b", re.IGNORECASE)

# Codes. A token of letters and digits joined by dashes ("RR-1234", "RR-ORC-1042", "SKU-1098"),
# one that starts with a letter and holds 3+ digits ("X1098", "RR1042A"), or a bare number of
# 3+ digits after a word that names a product or order ("like 1098", "SKU 1098", "#1098").
# Not codes: ranges and quantities ("10-13 °C", "3-4 months", "5 cm"), years, fractions,
# measurements written together ("6500K", "100ml": digits first, then only letters).
DASHED_CODE_RE = re.compile(
    r"(?<![\w-])(?=[A-Za-z0-9-]*[A-Za-z])(?=[A-Za-z0-9-]*\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+(?![\w-])"
)
LETTER_DIGIT_CODE_RE = re.compile(r"(?<![\w-])[A-Za-z]+\d[A-Za-z0-9]*(?![\w-])")
STRONG_CODE_CUES = (
    r"sku|item|model|product|part|order|article|ref|reference|catalog(?:ue)?|code|serial|"
    r"number|num|no\.|nr\.|#"
)
WEAK_CODE_CUES = r"like|such as|called|named"
CUED_NUMBER_RE = re.compile(
    rf"(?:(?<![\w#])(?P<strong>{STRONG_CODE_CUES})|\b(?P<weak>{WEAK_CODE_CUES}))"
    r"\s*(?:#|no\.?|number|:)?\s*(?P<number>\d{3,})(?![\w,.]\d|[\w/%°-])",
    re.IGNORECASE,
)
# A cued number followed by one of these is a quantity ("like 100 times", "item 250 ml").
QUANTITY_WORDS = frozenset(
    "mm cm m km in inch inches ft foot feet yd ml l liter liters litre litres g kg mg lb lbs oz "
    "gallon gallons quart quarts pint pints cup cups % percent degree degrees °c °f c f k lux fc "
    "lumens lm ppm w watt watts v hz second seconds minute minutes hour hours day days week weeks "
    "month months year years time times plant plants pot pots seed seeds leaf leaves species "
    "seedlings cuttings bulbs grams units pieces pcs hybrids varieties kinds types people "
    "customers orders items".split()
)
YEAR_RE = re.compile(r"^(?:19|20)\d\d$")

# Where a unit of text ends for removal: sentence punctuation followed by space (so "3.5 cm",
# "$24.95" and "example.com/a" are not split, as `guard.SENTENCE_RE` would), or a line end.
SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
ABBREVIATIONS = frozenset("e.g. i.e. etc. vs. approx. ca. no. nr. dr. mr. mrs. ms. st. inc. ltd. co.".split())
LIST_MARKER_RE = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])?\s*$")


@dataclass(frozen=True)
class FoundPoint:
    """One contact point in a text: where it stands and its normalized form."""

    start: int
    end: int
    kind: str  # "url", "email", "phone", "price" or "code"
    value: str


@dataclass(frozen=True)
class GuardedText:
    """The answer with invented contact points removed, and what was removed (for the log)."""

    text: str
    removed: list[str] = field(default_factory=list)
    sentences_removed: int = 0


def _strip_trailing(text: str) -> str:
    """Trailing punctuation is prose, not part of a link; an unbalanced ")" closes a bracket."""
    while text and text[-1] in TRAILING_PUNCTUATION:
        if text[-1] == ")" and text.count("(") >= text.count(")"):
            break
        text = text[:-1]
    return text


def normalize_url(raw: str) -> str:
    """`host/path`: no scheme, no `www.`, host lowercased, no query, fragment or trailing slash."""
    text = re.sub(r"^[a-z]+://", "", raw.strip(), flags=re.IGNORECASE)
    text = re.split(r"[?#]", text, maxsplit=1)[0]
    host, _, path = text.partition("/")
    host = host.lower().split("@")[-1].split(":")[0].rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    path = path.rstrip("/")
    return f"{host}/{path}" if path else host


def normalize_phone(raw: str) -> str | None:
    digits = re.sub(r"\D", "", raw)
    if not MIN_PHONE_DIGITS <= len(digits) <= MAX_PHONE_DIGITS:
        return None
    return f"tel:{digits}"


def normalize_price(currency: str, amount: str) -> str | None:
    sign = (
        CURRENCY_SIGNS.get(currency)
        or CURRENCY_SIGNS.get(currency.upper())
        or CURRENCY_WORDS.get(currency.lower())
    )
    if sign is None:
        return None
    try:
        value = Decimal(amount.replace(",", ""))
    except InvalidOperation:
        return None
    return f"{sign}{value:.0f}" if value == value.to_integral_value() else f"{sign}{value:.2f}"


def _is_measurement(token: str) -> bool:
    """ "6500K", "100ml", "2nd": digits first and letters only after them are a quantity."""
    return bool(re.fullmatch(r"\d+[A-Za-z]+", token))


def _dashed_code(token: str) -> bool:
    """A dashed token is a code when it looks like one ("RR-12", "X-1098"); not "B-12", "5-in-1",
    "3-4cm" or "mid-2024"."""
    letters = sum(ch.isalpha() for ch in token)
    digits = sum(ch.isdigit() for ch in token)
    segments = token.split("-")
    if token[0].isdigit() and not re.search(r"\d{3}", token):
        return False  # "5-in-1", "3-4cm", "10-12in": a quantity or a range
    words = [seg for seg in segments if seg.isalpha()]
    numbers = [seg for seg in segments if seg.isdigit()]
    if len(words) + len(numbers) == len(segments) and all(YEAR_RE.match(n) for n in numbers):
        if all(w.islower() or w.istitle() for w in words):
            return False  # "mid-2024", "Pre-2020": a time, not a product
    return digits >= 3 or (letters >= 2 and digits >= 2)


def _number_is_quantity(text: str, end: int) -> bool:
    following = re.match(r"\s*([^\s.,;:!?)]+)", text[end:])
    return following is not None and following.group(1).lower() in QUANTITY_WORDS


def find_contact_points(text: str) -> list[FoundPoint]:
    """Every contact point in `text`, in order, none overlapping (links first, then e-mails, ...)."""
    found: list[FoundPoint] = []

    def free(start: int, end: int) -> bool:
        return all(end <= p.start or start >= p.end for p in found)

    def add(start: int, end: int, kind: str, value: str | None) -> None:
        if value and end > start and free(start, end):
            found.append(FoundPoint(start, end, kind, value))

    for match in EMAIL_RE.finditer(text):
        raw = _strip_trailing(match.group(0))
        add(match.start(), match.start() + len(raw), "email", raw.lower())
    for pattern in (SCHEME_URL_RE, WWW_URL_RE, BARE_URL_RE):
        for match in pattern.finditer(text):
            raw = _strip_trailing(match.group(0))
            host = raw.split("/")[0]
            if pattern is BARE_URL_RE and "/" not in raw and not host.rsplit(".", 1)[-1].islower():
                continue  # "roots.It": two sentences joined without a space
            add(match.start(), match.start() + len(raw), "url", normalize_url(raw))
    for match in PRICE_BEFORE_RE.finditer(text):
        add(match.start(), match.end(), "price", normalize_price(match.group("cur"), match.group("amount")))
    for match in PRICE_AFTER_RE.finditer(text):
        add(match.start(), match.end(), "price", normalize_price(match.group("cur"), match.group("amount")))
    for match in CENTS_RE.finditer(text):
        add(match.start(), match.end(), "price", f"$0.{int(match.group('amount')):02d}")
    for pattern in (INTERNATIONAL_PHONE_RE, US_PHONE_RE):
        for match in pattern.finditer(text):
            add(match.start(), match.end(), "phone", normalize_phone(match.group(0)))
    for match in CALL_PHONE_RE.finditer(text):
        add(match.start("number"), match.end("number"), "phone", normalize_phone(match.group("number")))
    for match in LONG_DIGIT_RUN_RE.finditer(text):
        add(match.start(), match.end(), "phone", normalize_phone(match.group(0)))
    for match in DASHED_CODE_RE.finditer(text):
        if _dashed_code(match.group(0)):
            add(match.start(), match.end(), "code", match.group(0).upper())
    for match in LETTER_DIGIT_CODE_RE.finditer(text):
        if sum(ch.isdigit() for ch in match.group(0)) >= 3:
            add(match.start(), match.end(), "code", match.group(0).upper())
    for match in CUED_NUMBER_RE.finditer(text):
        number = match.group("number")
        if _number_is_quantity(text, match.end()):
            continue
        if match.group("weak") and YEAR_RE.match(number):
            continue  # "like 2024" is a year far more often than a product
        add(match.start("number"), match.end("number"), "code", number)
    return sorted(found, key=lambda p: p.start)


def extract_contact_points(text: str) -> set[str]:
    """The normalized contact points in `text` (see the module docstring for the forms)."""
    return {p.value for p in find_contact_points(text)}


def contact_kind(point: str) -> str:
    """The kind of a normalized point, read from its form: url, email, phone, price or code."""
    if point.startswith("tel:"):
        return "phone"
    if "@" in point:
        return "email"
    if point[:1] in "$€£¥":
        return "price"
    if "." in point:
        return "url"
    return "code"


@dataclass(frozen=True)
class ContactAllowlist:
    """The contact points an answer may repeat, because the shop wrote them where it may draw from.

    Links count when the host is the same and the path extends an allowed one (a section anchor,
    a sub-page); the bare host of an allowed link counts too (the shop's home page). A different
    host never counts. Everything else matches exactly, in normalized form; a phone also matches
    when one number is the other with a country code in front.
    """

    points: frozenset[str] = frozenset()

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> ContactAllowlist:
        points: set[str] = set()
        for text in texts:
            if text:
                points |= extract_contact_points(text)
        return cls(frozenset(points))

    def with_texts(self, texts: Iterable[str]) -> ContactAllowlist:
        """This allowlist plus the points of `texts` (per-answer grounding on top of the knowledge base)."""
        return ContactAllowlist(self.points | ContactAllowlist.from_texts(texts).points)

    def allows(self, point: str) -> bool:
        if point in self.points:
            return True
        kind = contact_kind(point)
        if kind == "url":
            return self._allows_url(point)
        if kind == "phone":
            return self._allows_phone(point)
        return False

    def _allows_url(self, point: str) -> bool:
        host, _, path = point.partition("/")
        for allowed in self.points:
            if contact_kind(allowed) != "url":
                continue
            allowed_host, _, allowed_path = allowed.partition("/")
            if allowed_host != host:
                continue
            if not path or path == allowed_path or path.startswith(allowed_path.rstrip("/") + "/"):
                return True
        return False

    def _allows_phone(self, point: str) -> bool:
        digits = point[4:]
        for allowed in self.points:
            if not allowed.startswith("tel:"):
                continue
            other = allowed[4:]
            longer, shorter = (digits, other) if len(digits) >= len(other) else (other, digits)
            if longer.endswith(shorter) and len(longer) - len(shorter) <= 3 and len(shorter) >= 10:
                return True
        return False


def _split_line(line: str) -> list[str]:
    """A line's sentences, each keeping its trailing space, so joining them gives the line back."""
    pieces: list[str] = []
    start = 0
    for match in SENTENCE_END_RE.finditer(line):
        words = line[start : match.start()].split()
        if words and words[-1].lower() in ABBREVIATIONS:
            continue
        pieces.append(line[start : match.end()])
        start = match.end()
    if start < len(line):
        pieces.append(line[start:])
    return pieces


def remove_invented_contacts(text: str, allowlist: ContactAllowlist, min_words_left: int = 6) -> GuardedText:
    """`text` without the sentences, list items or lines that carry a contact point not allowed.

    What is kept stays verbatim. A line left with nothing but a list marker goes, and so does a
    line ending in ":" whose following lines were all removed (it would introduce nothing).
    Raises `DegenerateAnswer` naming the invented points when fewer than `min_words_left` words
    remain, so the pipeline falls back instead of sending a fragment.
    """
    invented = [p for p in find_contact_points(text) if not allowlist.allows(p.value)]
    if not invented:
        return GuardedText(text=text)
    removed_values = list(dict.fromkeys(p.value for p in invented))
    kept_lines: list[tuple[str, bool]] = []  # (kept text, whether the line lost something)
    sentences_removed = 0
    offset = 0
    for line in text.splitlines(keepends=True):
        pieces: list[str] = []
        lost = False
        position = offset
        for sentence in _split_line(line):
            end = position + len(sentence)
            if any(p.start < end and p.end > position for p in invented):
                sentences_removed += 1
                lost = True
            else:
                pieces.append(sentence)
            position = end
        offset += len(line)
        kept = "".join(pieces)
        if lost and LIST_MARKER_RE.match(kept):
            kept = ""
        elif lost and kept and line.endswith("\n") and not kept.endswith("\n"):
            kept = kept.rstrip() + "\n"
        kept_lines.append((kept, lost))
    result = _drop_orphan_introductions(kept_lines)
    result = re.sub(r"\n{3,}", "\n\n", result).strip()
    log.info(
        "contact guard removed %d sentence(s) with invented contact points: %s",
        sentences_removed,
        ", ".join(removed_values),
    )
    if len(WORD_RE.findall(result)) < min_words_left:
        raise DegenerateAnswer(
            "invented contact points: "
            + ", ".join(removed_values)
            + f" (removed {sentences_removed} sentence(s); too little left)"
        )
    return GuardedText(text=result, removed=removed_values, sentences_removed=sentences_removed)


def _drop_orphan_introductions(lines: list[tuple[str, bool]]) -> str:
    """Join the kept lines, dropping a closing "X:" sentence whose following lines were all removed."""
    out: list[str] = []
    for i, (kept, _) in enumerate(lines):
        if kept.rstrip().endswith(":") and _next_block_removed(lines[i + 1 :]):
            pieces = _split_line(kept.rstrip())
            kept = "".join(pieces[:-1]).rstrip()
            kept = kept + "\n" if kept else ""
        out.append(kept)
    return "".join(out)


def _next_block_removed(lines: list[tuple[str, bool]]) -> bool:
    """Whether the lines up to the next blank line (blank lines right after skipped) all went."""
    block: list[tuple[str, bool]] = []
    for kept, lost in lines:
        if not kept.strip() and not lost:
            if block:
                break
            continue
        block.append((kept, lost))
    return bool(block) and all(lost and not kept.strip() for kept, lost in block)
