"""The answer-quality metrics score what a reader would call a match, and catch looping answers."""

from __future__ import annotations

import pytest

from bot.evaluation.metrics import degenerate_ratio, is_degenerate, lcs_length, percentile, rouge_l, token_f1


def test_token_f1_ignores_case_and_punctuation_and_counts_overlap() -> None:
    assert token_f1("Water it weekly.", "water IT weekly") == 1.0
    # 2 shared tokens of 4 predicted and 2 reference: P 0.5, R 1.0
    assert token_f1("water it every week", "water it") == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert token_f1("repot in spring", "water weekly") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "water") == 0.0


def test_token_f1_counts_repeated_words_only_as_often_as_the_reference_has_them() -> None:
    assert token_f1("water water water", "water") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))


def test_rouge_l_rewards_word_order() -> None:
    reference = "keep the pitcher plant in bright light"
    assert rouge_l(reference, reference) == 1.0
    shuffled = "light bright in plant pitcher the keep"
    assert token_f1(shuffled, reference) == 1.0
    assert rouge_l(shuffled, reference) < 0.3
    assert lcs_length("a b c d e".split(), "a c e".split()) == 3
    # LCS 3 ("keep", "bright", "light") of 4 predicted and 7 reference tokens.
    assert rouge_l("keep bright light always", reference) == pytest.approx(2 * (3 / 4) * (3 / 7) / (3 / 4 + 3 / 7))


def test_a_looping_answer_is_degenerate_and_a_normal_one_is_not() -> None:
    normal = (
        "Masdevallias like cool, humid air. Water them every two to three days with rainwater, "
        "keep the moss damp but never soggy, and give bright shade rather than direct sun."
    )
    loop = "Genetic Testing Registry: Masdevallia. " * 8
    assert degenerate_ratio(normal) == 0.0
    assert not is_degenerate(normal)
    assert degenerate_ratio(loop) > 0.7
    assert is_degenerate(loop)
    assert degenerate_ratio("too short") == 0.0


def test_percentile_interpolates_like_numpy() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 50) == 25.0
    assert percentile(values, 95) == pytest.approx(38.5)
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
