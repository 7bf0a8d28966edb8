"""The glossary tells that different names mean the same plant, place or policy word, and when they do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.glossary import Glossary

SHIPPED = Glossary.load(Path(__file__).resolve().parents[2] / "data" / "glossary.yaml")


def test_common_names_find_the_plant_and_the_longest_name_wins() -> None:
    assert SHIPPED.plants_in("my moth orchid has spider mites") == {"Phalaenopsis"}
    assert SHIPPED.plants_in("are living stones hard to keep?") == {"Lithops"}
    assert SHIPPED.plants_in("a Boston fern for my bathroom") and not SHIPPED.place_terms(
        "a Boston fern for my bathroom"), "a plant named after a city is a plant, not Massachusetts"


def test_an_entry_about_another_plant_conflicts_and_one_about_its_group_does_not() -> None:
    assert SHIPPED.plant_conflict("How often do I water a Cattleya?", "How often should I water a Phalaenopsis orchid?")
    assert not SHIPPED.plant_conflict("Is rainwater fine for my Cattleya?", "What is the best water for orchids?")
    assert not SHIPPED.plant_conflict("Is rainwater fine for my Cattleya?", "How do I increase humidity for my plants?")
    assert SHIPPED.plant_conflict("How do I water a Monstera?", "What water should I use for my Venus flytrap?")


def test_an_entry_written_about_another_topic_conflicts() -> None:
    assert SHIPPED.topic_conflict("my flytrap is sending up a flower stalk, should I cut it?",
                                  "Should I feed my Venus flytrap?")
    assert not SHIPPED.topic_conflict("how much sun does a flytrap want?", "How do I care for a Venus flytrap?")


def test_a_place_gives_the_narrowest_region_the_policy_names() -> None:
    names = {"canada", "washington", "contiguous united states"}
    known = names.__contains__

    def regions(text: str) -> list[str]:
        return SHIPPED.place_terms(text, lambda name: known(name.lower()))

    assert regions("can you send one to Montreal?") == ["Canada"]
    assert regions("shipping to Seattle") == ["Washington"]
    assert regions("what about Chicago") == ["contiguous United States"]
    assert regions("I live in Portland, OR") != [], "a two-letter code written in capitals is a place"
    assert regions("WHERE IS MY ORDER OR REFUND") == [], "in a shouted message OR is a word"


def test_policy_words_said_otherwise_are_found() -> None:
    assert SHIPPED.synonym_terms("Can I send back a pot?") == ["return"]
    assert SHIPPED.synonym_terms("How do I return a pot?") == [], "it says the policy's word itself"


def test_a_broken_glossary_names_the_key_and_a_missing_one_is_empty(tmp_path: Path) -> None:
    broken = tmp_path / "glossary.yaml"
    broken.write_text("plants: [{aliases: [x]}]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="app.glossary_file"):
        Glossary.load(broken)
    assert Glossary.load(tmp_path / "none.yaml").plants_in("moth orchid") == set()
