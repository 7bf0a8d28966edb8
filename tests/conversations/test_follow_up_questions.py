"""A follow-up is read as what it asks, completed with what it leaves out of the conversation."""

from __future__ import annotations

from pathlib import Path

from bot.factory import subject_finder
from bot.followups import carried_question, looks_dependent
from bot.glossary import Glossary

SUBJECTS = subject_finder(Glossary.load(Path(__file__).resolve().parents[2] / "data" / "glossary.yaml"),
                          lambda: frozenset({"sprout", "grower", "collector", "zone"}))


def test_a_follow_up_keeps_its_own_need_and_takes_only_the_subject_it_leaves_out() -> None:
    assert carried_question(["Do you ship to Canada?"], "And how much is it?", SUBJECTS) == \
        "And how much is it? (Canada, ship)"
    assert carried_question(["i want to try a dracula orchid. how cool does it need to be?"],
                            "and what should i pot it in?", SUBJECTS) == "and what should i pot it in? (Dracula)"


def test_a_subject_the_message_names_wins_over_the_conversations() -> None:
    assert carried_question(["Do you ship to Hawaii?"], "What about Alaska?", SUBJECTS) == "What about Alaska? (ship)"
    assert carried_question(["How much is the Sprout plan?"], "and the Grower one?", SUBJECTS) == \
        "and the Grower one? (plan)"


def test_a_message_that_names_its_own_subject_stands_alone_even_with_a_pronoun() -> None:
    assert not looks_dependent("How can I change my order after placing it?", SUBJECTS)
    assert not looks_dependent("is my Lithops ok if it gets cold at night?", SUBJECTS)
    assert looks_dependent("is it ok if it gets cold at night?", SUBJECTS)
    assert looks_dependent("and how much is it?", SUBJECTS)
