"""A generated answer never shows a link, e-mail, phone, price or code the shop did not write (issue #16).

The unit tests pin what counts as a contact point (and the ordinary quantities of plant care
that must not); the `real_models` test runs the bundled SmolLM2 on prompts that make it invent
links and numbers, and checks that the guard removes every one of them while a link from
`knowledge/` survives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.errors import AnswererUnavailable
from bot.indexing.documents import parse_document
from bot.llm.contact_guard import (
    ContactAllowlist,
    contact_kind,
    extract_contact_points,
    remove_invented_contacts,
)
from bot.llm.guard import DegenerateAnswer

REPO = Path(__file__).resolve().parents[2]
KNOWLEDGE = REPO / "knowledge"

# The answer from issue #16 ("My Nepenthes pitchers are turning black, what should I do?"),
# as the console showed it: orchid advice, a made-up product number and an unrelated site.
RECORDED_FAILURE = (
    "Black pitchers on an orchid are usually a sign of too much direct sun or water sitting in "
    "the crown. I recommended a pot cleaner like 1098 to wash the pot before you repot. Move the "
    "plant to bright, indirect light and let the top of the mix dry between waterings. For more "
    "tips see https://www.petcoplantsolutions.com/tips_and_tricks_"
)


def knowledge_texts() -> list[str]:
    """What the knowledge base gives an answer to repeat: every section's text and each page's url."""
    texts: list[str] = []
    for path in sorted(KNOWLEDGE.iterdir()):
        doc = parse_document(path.name, path.read_bytes())
        texts.append(doc.url)
        texts.extend(section.text for section in doc.sections)
    return texts


@pytest.fixture(scope="module")
def knowledge_allowlist() -> ContactAllowlist:
    return ContactAllowlist.from_texts(knowledge_texts())


# --- what counts as a contact point ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Keep Masdevallia at 10-13 °C at night.",
        "Humidity of 70-90 % suits most Nepenthes.",
        "Zone 2 delivery takes 2 to 4 days.",
        "New roots appear after 3-4 months.",
        "Start seedlings in a 5 cm pot.",
        "We added new hybrids in 2024.",
        "Dissolve 1/2 teaspoon of fertilizer in a litre of rain water.",
        "A 6500K grow light 30 cm above the plant, 12-14 hours a day.",
        "Use a 5-in-1 mix; feed at 1/4 strength with 20-20-20 fertilizer.",
        "It grows like 100 times faster in spring, like 2024 did.",
        "The #1 mistake is watering every day. Water 3 times a week, e.g. on Mondays.",
        "Vitamin B-12 does nothing for plants; 1,000 lux is too dark.",
        "Repot in mid-2024 or when the pot is 2-3 cm too small, see README.md.",
        "Water the roots.It needs light.In winter keep it cool.",
    ],
)
def test_ordinary_plant_care_numbers_are_not_contact_points(text: str):
    assert extract_contact_points(text) == set()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a pot cleaner like 1098", {"1098"}),
        ("order SKU 1098 today", {"1098"}),
        ("ask for item 1098 or model 2210", {"1098", "2210"}),
        ("product #1098 is back", {"1098"}),
        ("the bark mix RR-MIX-0007 and RR-1234", {"RR-MIX-0007", "RR-1234"}),
        ("the X1098 sprayer", {"X1098"}),
        ("it costs $24.95, or 24.95 USD", {"$24.95"}),
        ("€5 or 5 dollars", {"€5", "$5"}),
        ("write to Help@RareRoots.example.", {"help@rareroots.example"}),
        ("call +1 (503) 555-0123 today", {"tel:15035550123"}),
        ("or (503) 555-0123, or 1-800-555-0199", {"tel:5035550123", "tel:18005550199"}),
        ("phone: 0301234567.", {"tel:0301234567"}),
        ("see https://www.Example.com/tips/?ref=x#top.", {"example.com/tips"}),
        ("see www.example.com or example.org/care-guide.", {"example.com", "example.org/care-guide"}),
        ("Create one at rareroots.example/signup with your email", {"rareroots.example/signup"}),
    ],
)
def test_links_emails_phones_prices_and_codes_are_found_in_normalized_form(text: str, expected: set[str]):
    assert extract_contact_points(text) == expected


def test_the_same_link_written_three_ways_is_one_contact_point():
    forms = ["https://www.example.com/care/", "http://example.com/care", "www.example.com/care."]
    assert {frozenset(extract_contact_points(f)) for f in forms} == {frozenset({"example.com/care"})}


# --- what the shop wrote is allowed ---------------------------------------------------------


def test_pages_under_an_allowed_link_are_allowed_but_other_hosts_never_are():
    allow = ContactAllowlist.from_texts(["url: https://rareroots.example/help/shipping"])
    assert allow.allows("rareroots.example/help/shipping")
    assert allow.allows("rareroots.example/help/shipping/zones")
    assert allow.allows("rareroots.example")  # the shop's home page
    assert not allow.allows("rareroots.example/help/shipping-rates")
    assert not allow.allows("rareroots.example/help")
    assert not allow.allows("rareroots.com/help/shipping")
    assert not allow.allows("evil.rareroots.example/help/shipping")


def test_phone_with_country_code_matches_the_number_the_shop_wrote():
    allow = ContactAllowlist.from_texts(["Call us on +1 503 555 0123."])
    assert allow.allows("tel:5035550123")
    assert not allow.allows("tel:5035550124")


def test_knowledge_base_prices_codes_and_email_are_allowed(knowledge_allowlist: ContactAllowlist):
    answer = "Write to help@rareroots.example; SKU RR-ORC-1042 costs $24, Zone 3 shipping $24.95."
    points = extract_contact_points(answer)
    assert points == {"help@rareroots.example", "RR-ORC-1042", "$24", "$24.95"}
    assert all(knowledge_allowlist.allows(p) for p in points)
    assert not knowledge_allowlist.allows("$23")


# --- the guard ------------------------------------------------------------------------------


def test_recorded_failure_loses_the_invented_cleaner_and_link_but_keeps_the_care_advice(
    knowledge_allowlist: ContactAllowlist,
):
    guarded = remove_invented_contacts(RECORDED_FAILURE, knowledge_allowlist)
    assert "1098" not in guarded.text
    assert "petcoplantsolutions" not in guarded.text
    assert guarded.removed == ["1098", "petcoplantsolutions.com/tips_and_tricks_"]
    assert guarded.sentences_removed == 2
    assert guarded.text == (
        "Black pitchers on an orchid are usually a sign of too much direct sun or water sitting in "
        "the crown. Move the plant to bright, indirect light and let the top of the mix dry "
        "between waterings."
    )


def test_a_link_from_the_knowledge_base_survives_in_an_answer(knowledge_allowlist: ContactAllowlist):
    answer = (
        "Live plants ship Monday to Wednesday only. Zones and costs are listed at "
        "https://rareroots.example/help/shipping. Sign up at rareroots.example/signup to track orders."
    )
    guarded = remove_invented_contacts(answer, knowledge_allowlist)
    assert guarded.text == answer
    assert guarded.removed == [] and guarded.sentences_removed == 0


def test_grounding_entries_extend_what_the_answer_may_repeat(knowledge_allowlist: ContactAllowlist):
    answer = "Dust the cut end with cinnamon to keep rot out. Our staff recommend the RR-TOOL-0042 snips."
    assert remove_invented_contacts(answer, knowledge_allowlist).sentences_removed == 1
    grounded = knowledge_allowlist.with_texts(["Use sterile snips (SKU RR-TOOL-0042) for pitchers."])
    assert remove_invented_contacts(answer, grounded).text == answer


def test_invented_list_items_and_the_line_introducing_them_are_removed(knowledge_allowlist: ContactAllowlist):
    answer = (
        "Cut blackened pitchers off where they meet the leaf; new ones will grow.\n"
        "Useful resources:\n"
        "- https://www.nepenthescareservices.com/pet_planting\n"
        "- call 503-555-0199\n"
        "\n"
        "Keep the plant in bright light and water it with rain water."
    )
    guarded = remove_invented_contacts(answer, knowledge_allowlist)
    assert guarded.text == (
        "Cut blackened pitchers off where they meet the leaf; new ones will grow.\n"
        "\n"
        "Keep the plant in bright light and water it with rain water."
    )
    assert guarded.removed == ["nepenthescareservices.com/pet_planting", "tel:5035550199"]


def test_answer_with_too_little_left_falls_back_naming_the_invented_point(
    knowledge_allowlist: ContactAllowlist, caplog: pytest.LogCaptureFixture
):
    answer = "Water it weekly. Buy the cleaner at https://www.petcoplantsolutions.com/tips_and_tricks_ now."
    with caplog.at_level(logging.INFO, logger="bot.llm.contact_guard"):
        with pytest.raises(DegenerateAnswer, match="petcoplantsolutions.com/tips_and_tricks_") as raised:
            remove_invented_contacts(answer, knowledge_allowlist, min_words_left=6)
    assert isinstance(raised.value, AnswererUnavailable)  # the pipeline's fallback signal
    assert "petcoplantsolutions" in caplog.text
    # With a lower floor the short remainder is good enough to show.
    assert remove_invented_contacts(answer, knowledge_allowlist, min_words_left=3).text == "Water it weekly."


def test_answer_without_contact_points_is_returned_unchanged(knowledge_allowlist: ContactAllowlist):
    answer = "Water Masdevallia when the moss feels almost dry,\n\nabout twice a week in summer.  "
    guarded = remove_invented_contacts(answer, knowledge_allowlist)
    assert guarded.text == answer and guarded.removed == []


def test_shipped_config_turns_the_guard_on():
    settings = load_settings(REPO / "config.toml", env={})
    assert settings.domain.guard.contact_points is True
    assert settings.domain.guard.min_words_left == 6


# --- real model output ----------------------------------------------------------------------

# Prompts that make the base model write links and numbers (first one that does is used).
INVENTING_PROMPTS = [
    "What is the website and phone number of a shop that sells Nepenthes? Give the full URL.",
    "Which website can I order orchid fertilizer from? Give the full link starting with https://",
    "Give me the full URL of a website with Nepenthes care tips, and a phone number to call.",
]


def links_or_phones(text: str) -> set[str]:
    return {p for p in extract_contact_points(text) if contact_kind(p) in ("url", "phone")}


@pytest.mark.real_models
def test_guard_removes_every_contact_point_the_real_model_invents(
    real_settings_factory: Callable[..., Settings], knowledge_allowlist: ContactAllowlist
):
    from bot.llm.backend import GenerationParams
    from bot.llm.hf import HFBackend

    settings = real_settings_factory("contact-guard", **{"domain.backend": "hf"})
    cfg = settings.domain
    params = GenerationParams(
        max_new_tokens=40,
        repetition_penalty=cfg.repetition_penalty,
        no_repeat_ngram_size=cfg.no_repeat_ngram_size,
    )
    model = HFBackend(settings).load(None)
    try:
        outputs = []
        for prompt in INVENTING_PROMPTS:
            messages = [{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": prompt}]
            raw = model.generate(messages, params).text
            outputs.append(raw)
            if links_or_phones(raw):
                break
    finally:
        model.close()

    points = extract_contact_points(raw)
    assert links_or_phones(raw), f"no link or phone in {outputs!r}"
    invented = {p for p in points if not knowledge_allowlist.allows(p)}
    assert invented, f"the model only repeated the shop's own points: {raw!r}"

    # The real output with a sentence of the shop's own appended: the invented points go, the
    # shop's link stays verbatim.
    ours = "Shipping zones and costs are listed at https://rareroots.example/help/shipping."
    answer = raw.rstrip() + "\n\n" + ours
    guarded = remove_invented_contacts(answer, knowledge_allowlist, min_words_left=cfg.guard.min_words_left)
    assert invented <= set(guarded.removed), (raw, guarded)
    assert all(knowledge_allowlist.allows(p) for p in extract_contact_points(guarded.text)), guarded.text
    assert ours in guarded.text

    # The raw output alone: either what is left carries no invented point, or it falls back.
    try:
        alone = remove_invented_contacts(raw, knowledge_allowlist, min_words_left=cfg.guard.min_words_left)
    except DegenerateAnswer as exc:
        assert any(p in str(exc) for p in invented), str(exc)
    else:
        assert not extract_contact_points(alone.text) - {p for p in points if knowledge_allowlist.allows(p)}
