"""What the guard lets through to a customer, and what it stops."""

from __future__ import annotations

import pytest

from bot.config import DomainConfig
from bot.errors import AnswererUnavailable
from bot.llm.guard import (
    GuardPolicy,
    clean_partial,
    finalize_answer,
    should_stop_early,
    trim_loop,
)

SYSTEM = DomainConfig().system_prompt
POLICY = GuardPolicy.from_config(DomainConfig())


def test_a_trailing_loop_is_trimmed_to_one_copy():
    raw = (
        "Water it when the moss is almost dry. "
        + "Genetic Testing Registry: Masdevallia. " * 6
        + "Genetic Testing"
    )
    assert finalize_answer(raw, POLICY) == (
        "Water it when the moss is almost dry. Genetic Testing Registry: Masdevallia."
    )


def test_repeated_sentences_are_dropped_but_the_answer_kept():
    raw = "Keep the soil moist. Use rain water. Keep the soil moist. Give bright indirect light."
    assert trim_loop(raw) == "Keep the soil moist. Use rain water. Give bright indirect light."


def test_an_answer_that_is_only_noise_never_reaches_the_customer():
    with pytest.raises(AnswererUnavailable, match="degenerate answer: empty"):
        finalize_answer("<|im_end|> ... !!", POLICY)


def test_interleaved_repetition_over_the_threshold_is_degenerate():
    raw = " ".join(f"water the orchid water the orchid now {i}" for i in range(12))
    with pytest.raises(AnswererUnavailable, match="degenerate answer: .* repeat"):
        finalize_answer(raw, POLICY)


def test_special_tokens_and_role_headers_are_stripped():
    raw = "<|im_start|>assistant\nWater weekly.<|im_end|><|endoftext|>"
    assert finalize_answer(raw, POLICY) == "Water weekly."


def test_the_system_prompt_is_not_leaked():
    raw = f"Sure. {SYSTEM} Water a Venus flytrap with rain water only."
    answer = finalize_answer(raw, GuardPolicy(system_prompt=SYSTEM))
    assert answer == "Sure. Water a Venus flytrap with rain water only."
    assert "plant-care expert of Rare Roots" not in answer


def test_long_answers_are_cut_at_a_sentence_end():
    raw = "Orchids like humidity. Mist them in the morning. Then " + " ".join(f"step{i}" for i in range(60))
    answer = finalize_answer(raw, GuardPolicy(max_chars=90))
    assert answer == "Orchids like humidity. Mist them in the morning."


def test_stop_strings_end_the_answer():
    policy = GuardPolicy(stop=("\nCustomer:",))
    assert finalize_answer("Repot in spring.\nCustomer: and then?", policy) == "Repot in spring."
    assert should_stop_early("Repot in spring.\nCustomer:", policy) == "stop string"


def test_decoding_stops_early_on_a_loop():
    assert should_stop_early("Use peat. " + "Mist daily and mist daily and " * 6, POLICY) == "repetition loop"
    assert should_stop_early("Use peat and perlite, and mist the leaves daily.", POLICY) is None


def test_model_declining_falls_back_instead_of_answering():
    with pytest.raises(AnswererUnavailable, match="outside the domain"):
        finalize_answer("I can only help with plant care questions.", POLICY)


def test_partial_text_hides_tokens_and_stop_text():
    policy = GuardPolicy(stop=("###",))
    assert clean_partial("Water <|im_end|>weekly ### secret", policy) == "Water weekly"
