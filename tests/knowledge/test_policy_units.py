"""Policy text is cut into units a customer can read on their own, and the lead is chosen from them.

Pure functions on strings and a fake encoder: no model, milliseconds.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from bot.answerers import lead
from bot.answerers.lead import (
    UnitVectors,
    answer_types,
    choose_lead,
    matches_answer_type,
    render_lead,
    score_units,
)
from bot.answerers.policy_units import render_row, split_sentences, split_units
from bot.evaluation.metrics import first_sentence, states_key_fact
from bot.indexing.knowledge_base import SearchHit
from bot.interfaces import Source

ZONES = """| Zone | Where | Delivery time | Cost |
|---|---|---|---|
| Zone 1 | Oregon, Washington, California | 1-2 business days | $7.95 |
| Zone 3 | Alaska, Hawaii, Puerto Rico | 3-5 business days | $24.95 |

Orders over $99 ship free within Zones 1 and 2."""


def test_sentences_do_not_break_at_prices_abbreviations_or_wrapped_lines() -> None:
    paragraph = ("Every order must include a heat pack (SKU RR-HEAT-72, $3.50). Pots, e.g. terracotta, ship\n"
                 "free. Sign up at rareroots.example/signup today!")
    assert split_sentences(paragraph) == [
        "Every order must include a heat pack (SKU RR-HEAT-72, $3.50).",
        "Pots, e.g. terracotta, ship free.",
        "Sign up at rareroots.example/signup today!",
    ]


def test_a_table_row_keeps_its_header() -> None:
    rows = [u for u in split_units(ZONES) if u.kind == "row"]
    assert [r.text for r in rows] == [
        "Zone 1 · Where: Oregon, Washington, California · Delivery time: 1-2 business days · Cost: $7.95",
        "Zone 3 · Where: Alaska, Hawaii, Puerto Rico · Delivery time: 3-5 business days · Cost: $24.95",
    ]
    assert split_units(ZONES)[-1].text == "Orders over $99 ship free within Zones 1 and 2."


def test_a_cell_already_named_by_its_column_is_not_labelled_twice() -> None:
    assert render_row(["Zone", "Cost"], ["Canada", "$29.95"]) == "Zone: Canada · Cost: $29.95"
    assert render_row(["Zone", "Cost"], ["Zone 2", ""]) == "Zone 2"


def test_list_items_are_units_that_lean_on_the_sentence_introducing_them() -> None:
    units = split_units(
        "Once we approve a claim, you choose one of:\n\n- A replacement of the same plant.\n"
        "- Store credit, valid for 2\n  years.\n\nYou do not need to send the plant back."
    )
    assert [(u.kind, u.text) for u in units] == [
        ("sentence", "Once we approve a claim, you choose one of:"),
        ("item", "A replacement of the same plant."),
        ("item", "Store credit, valid for 2 years."),
        ("sentence", "You do not need to send the plant back."),
    ]
    assert units[1].context == units[2].context == 0
    assert units[3].context is None


def test_numbered_steps_are_items_without_their_numbers() -> None:
    units = split_units("1. Go to Account > Orders.\n2. Drop the parcel at any UPS location within 14 days.")
    assert [u.text for u in units] == ["Go to Account > Orders.", "Drop the parcel at any UPS location within 14 days."]


def test_a_sentence_pointing_back_depends_on_the_one_before() -> None:
    units = split_units("Every live plant is guaranteed to arrive alive. This is our warranty for live plants.")
    assert units[1].context == 0


def test_conditions_are_marked() -> None:
    units = split_units("We refund within 5 business days. Shipping costs are refunded only when the return "
                        "is our mistake.")
    assert [u.condition for u in units] == [False, True]


def test_answer_types_follow_the_question_words() -> None:
    assert answer_types("How much is a heat pack?") == {"price"}
    assert "duration" in answer_types("How long do I have to return an item?")
    assert answer_types("Will you match a lower price from another nursery?") == {"price", "yes_no"}
    assert matches_answer_type("It costs $3.50.", frozenset({"price"}))
    assert matches_answer_type("within 30 days of delivery", frozenset({"duration"}))
    assert matches_answer_type("We do not price-match other nurseries.", frozenset({"yes_no"}))
    assert not matches_answer_type("Prices include the pot.", frozenset({"price"}))


def test_a_how_do_i_question_asks_for_steps_wherever_it_stands() -> None:
    assert "procedure" in answer_types("I forgot my password. How do I reset it?")
    assert "procedure" in answer_types("I have printed my return label. What do I do now?")
    assert "procedure" not in answer_types("How long do I have to return an item?")
    steps = frozenset({"procedure"})
    assert matches_answer_type("Change your email address in Account > Profile.", steps)
    assert matches_answer_type("Create one at rareroots.example/signup with your email address.", steps)
    assert matches_answer_type("To close your account, go to Account > Privacy.", steps)
    assert not matches_answer_type("The Greenhouse Club is our membership.", steps)


def _hit(chunk_id: str, text: str, score: float) -> SearchHit:
    return SearchHit(chunk_id, text, score, score, 0.0, Source(title="Policy", path=f"{chunk_id}.md"))


class BagOfWordsEncoder:
    """A deterministic stand-in for the embedder: hashed word counts, normalised."""

    calls = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        BagOfWordsEncoder.calls += 1
        rows = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace("?", " ").replace(".", " ").split():
                rows[row, zlib.crc32(word.encode()) % 64] += 1  # stable across runs, unlike hash()
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)


def test_the_unit_that_answers_leads_and_its_conditions_follow() -> None:
    text = ("Return shipping is free when the item arrived defective or we sent the wrong item. "
            "For any other reason we deduct $6.95 from your refund for the return label.\n\n"
            "We refund within 5 business days of receiving your return.")
    encoder = BagOfWordsEncoder()
    question = "Is return shipping free?"
    scored = score_units(question, encoder([question])[0], [_hit("returns", text, 0.6)], UnitVectors(encoder))
    lead = render_lead(choose_lead(scored, max_chars=100, max_units=1))
    assert lead == ("Return shipping is free when the item arrived defective or we sent the wrong item. "
                    "For any other reason we deduct $6.95 from your refund for the return label.")


RESET = ("To reset your password, choose Forgot password and follow the link we email you. "
         "The link is valid for 1 hour. If the email does not arrive, check your spam folder.\n\n"
         "We lock an account for 15 minutes after 5 failed sign-in attempts.")


def test_a_procedure_keeps_what_comes_next_in_its_paragraph_while_it_fits() -> None:
    encoder = BagOfWordsEncoder()
    question = "How do I reset my password?"
    scored = score_units(question, encoder([question])[0], [_hit("account", RESET, 0.6)], UnitVectors(encoder))
    first = "To reset your password, choose Forgot password and follow the link we email you."
    assert render_lead(choose_lead(scored, max_chars=100, max_units=1)) == first
    assert render_lead(choose_lead(scored, max_chars=120, max_units=1, steps=True)) == (
        first + " The link is valid for 1 hour.")  # the spam-folder sentence does not fit in 120
    # The next paragraph is another matter, however much room is left.
    assert render_lead(choose_lead(scored, max_chars=600, max_units=1, steps=True)) == (
        first + " The link is valid for 1 hour. If the email does not arrive, check your spam folder.")


def test_a_procedure_never_runs_on_into_the_next_row_of_a_table() -> None:
    encoder = BagOfWordsEncoder()
    question = "How do I get plants delivered to Oregon, Washington or California?"
    scored = score_units(question, encoder([question])[0], [_hit("zones", ZONES, 0.6)], UnitVectors(encoder))
    lead_text = render_lead(choose_lead(scored, max_chars=600, max_units=1, steps=True))
    assert lead_text == "Zone 1 · Where: Oregon, Washington, California · Delivery time: 1-2 business days · Cost: $7.95"


def test_units_from_two_sections_are_each_kept_with_their_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lead, "FURTHER_UNIT_MARGIN", 100.0)  # the mechanism, not the tuned margin
    encoder = BagOfWordsEncoder()
    question = "How much does shipping to Hawaii cost and is a heat pack needed?"
    hits = [_hit("zones", ZONES, 0.7), _hit("season", "Every order to Zone 3 must include a heat pack.", 0.6)]
    scored = score_units(question, encoder([question])[0], hits, UnitVectors(encoder))
    groups = choose_lead(scored, max_chars=600, max_units=4)  # room for every unit: grouping, not ranking
    assert {hit.chunk_id for hit, _ in groups} == {"zones", "season"}


def test_unit_vectors_are_embedded_once_per_text() -> None:
    encoder = BagOfWordsEncoder()
    vectors = UnitVectors(encoder, size=10)
    before = BagOfWordsEncoder.calls
    vectors(["a b", "c d"])
    vectors(["c d", "a b"])
    assert BagOfWordsEncoder.calls == before + 1


def test_key_fact_is_looked_for_in_the_first_sentence_only() -> None:
    answer = "Zone 3 · Cost: $24.95\nOrders over $99 ship free."
    assert first_sentence(answer) == "Zone 3 · Cost: $24.95"
    assert states_key_fact(answer, ["$24.95"])
    assert not states_key_fact(answer, ["$99"])
    assert states_key_fact("We do not price-match other nurseries. Prices include the pot.", ["do not price-match"])
    assert not states_key_fact("Prices include the pot. We do not price-match.", ["do not price-match"])
