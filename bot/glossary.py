"""The names customers use for what the shop's texts name: plants, and the places a shipping policy covers.

A customer writes "moth orchid" where the expert entry says Phalaenopsis, and "Montreal" where
the shipping policy says Canada. A small sentence embedder knows neither reliably, and a wrong
guess answers a neighbouring question: the Phalaenopsis watering interval for a Cattleya, the
Zone 3 price for Toronto. `data/glossary.yaml` (`app.glossary_file`) lists, from general
knowledge, each plant with its group and aliases, and each region with the larger areas it lies
in and the cities customers name. Two uses:

- the expert memory reuses an entry only when the plant the question names is the entry's plant
  or within the group the entry speaks of ("orchids" covers a Cattleya; a Monstera is nobody's);
- the retrieval lead reads "Montreal" as also naming Quebec and Canada, so the Canada row answers.

Ops edit the file like the seed routes: add a plant the shop sells, a city customers write from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

log = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
MAX_ALIAS_WORDS = 5


def _words(text: str) -> list[str]:
    return [w.replace("’", "'") for w in _WORD.findall(text)]


def _fold(word: str) -> str:
    """Lower case, and a plural folded, so "orchids" finds "orchid" and "Lithops" stays itself."""
    word = word.lower()
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "ps", "is")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class Plant:
    name: str
    group: str


@dataclass(frozen=True)
class Place:
    name: str
    within: tuple[str, ...]


@dataclass(frozen=True)
class Mention:
    """A name found in a text: what it names (a plant, a group, a place) and the words used."""

    kind: str  # "plant" | "group" | "place" | "ambiguous"
    target: str  # the plant's or place's name, or the group
    words: str  # as written


@dataclass
class Glossary:
    plants: dict[str, Plant] = field(default_factory=dict)
    places: dict[str, Place] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    topics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _topic_index: dict[tuple[str, ...], str] = field(default_factory=dict)
    _synonym_index: dict[tuple[str, ...], str] = field(default_factory=dict)
    # folded alias words -> (kind, target); case-sensitive codes ("WA", "QC") kept apart
    _index: dict[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)
    _codes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Glossary:
        return cls()

    @classmethod
    def load(cls, path: Path) -> Glossary:
        """The glossary at `path`; a missing file is an empty glossary (said once in the log)."""
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            log.warning("no glossary at %s: plant aliases and places are not recognised", path)
            return cls()
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"app.glossary_file: cannot read {path} ({exc}); fix the file or point the key "
                              "at another one") from None
        try:
            return cls.from_data(data or {})
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ConfigError(f"app.glossary_file: {path}: {exc} (see the format at the top of data/glossary.yaml)"
                              ) from None

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Glossary:
        glossary = cls()
        for group, names in (data.get("groups") or {}).items():
            glossary.groups[str(group)] = tuple(str(n) for n in names or ())
            for name in (group, *(names or ())):
                glossary._add(str(name), "group", str(group))
        for row in data.get("plants") or ():
            plant = Plant(str(row["name"]), str(row.get("group", "")))
            glossary.plants[plant.name] = plant
            for alias in (plant.name, *(row.get("aliases") or ())):
                glossary._add(str(alias), "plant", plant.name)
        for row in data.get("places") or ():
            place = Place(str(row["name"]), tuple(str(w) for w in row.get("within") or ()))
            glossary.places[place.name] = place
            for alias in (place.name, *(row.get("aliases") or ())):
                glossary._add(str(alias), "place", place.name)
        for topic, words in (data.get("topics") or {}).items():
            glossary.topics[str(topic)] = tuple(str(w) for w in words or ())
            for word in words or ():
                key = tuple(_fold(w) for w in _words(str(word)))
                if key:
                    glossary._topic_index[key] = str(topic)
        for canonical, words in (data.get("synonyms") or {}).items():
            for word in words or ():
                key = tuple(_fold(w) for w in _words(str(word)))
                if key:
                    glossary._synonym_index[key] = str(canonical)
        for row in data.get("ambiguous") or ():
            alias = str(row["alias"])
            glossary._add(alias, "ambiguous", ", ".join(str(m) for m in row.get("means") or ()), replace=True)
        return glossary

    def _add(self, alias: str, kind: str, target: str, *, replace: bool = False) -> None:
        words = _words(alias)
        if not words:
            return
        if len(words) == 1 and words[0].isupper() and len(words[0]) <= 3:  # "WA", "QC", "UK": codes
            self._codes[words[0]] = (kind, target)
            return
        key = tuple(_fold(w) for w in words)[:MAX_ALIAS_WORDS]
        if replace or key not in self._index or self._index[key][0] == "group":
            self._index[key] = (kind, target)

    def mentions(self, text: str) -> list[Mention]:
        """Every glossary name in `text`, longest first at each position ("moth orchid" before "orchid")."""
        words = _words(text)
        folded = [_fold(w) for w in words]
        letters = [c for c in text if c.isalpha()]
        # In a shouted message "ME", "OK" and "HI" are words, not Maine, Oklahoma and Hawaii.
        shouting = bool(letters) and sum(c.isupper() for c in letters) > len(letters) / 2
        found: list[Mention] = []
        position = 0
        while position < len(words):
            for size in range(min(MAX_ALIAS_WORDS, len(words) - position), 0, -1):
                hit = self._index.get(tuple(folded[position:position + size]))
                if hit is not None:
                    found.append(Mention(hit[0], hit[1], " ".join(words[position:position + size])))
                    position += size
                    break
            else:
                code = None if shouting else self._codes.get(words[position])
                if code is not None:
                    found.append(Mention(code[0], code[1], words[position]))
                position += 1
        return found

    def topics_in(self, text: str) -> set[str]:
        """The plant-care topics a text names (watering, light, propagation...), by the glossary's words."""
        folded = [_fold(w) for w in _words(text)]
        found: set[str] = set()
        for position in range(len(folded)):
            for size in (3, 2, 1):
                topic = self._topic_index.get(tuple(folded[position:position + size]))
                if topic is not None:
                    found.add(topic)
        return found

    def synonym_terms(self, text: str) -> list[str]:
        """The policy's own words for what a text says in other words ("send back" gives "return"),
        those it does not say itself."""
        said = {_fold(w) for w in _words(text)}
        return [word for word in self.synonyms_in(text) if word not in said]

    def synonyms_in(self, text: str) -> dict[str, str]:
        """Each policy word a text says otherwise, with the words it said it in ("return": "send back")."""
        words = _words(text)
        folded = [_fold(w) for w in words]
        found: dict[str, str] = {}
        for position in range(len(folded)):
            for size in (3, 2, 1):
                word = self._synonym_index.get(tuple(folded[position:position + size]))
                if word is not None and word not in found:
                    found[word] = " ".join(words[position:position + size])
                    break
        return found

    def topic_conflict(self, question: str, entry_question: str) -> str:
        """Why an entry written about other topics cannot answer the question ("" when it can)."""
        asked, written = self.topics_in(question), self.topics_in(entry_question)
        if asked and written and not asked & written:
            return f"the question is about {', '.join(sorted(asked))}, the entry about {', '.join(sorted(written))}"
        return ""

    def plants_in(self, text: str) -> set[str]:
        return {m.target for m in self.mentions(text) if m.kind == "plant"}

    def groups_in(self, text: str) -> set[str]:
        named = self.mentions(text)
        return {m.target for m in named if m.kind == "group"}

    def place_terms(self, text: str, known: Callable[[str], bool] = lambda name: True) -> list[str]:
        """For each place the text names, the narrowest region containing it that `known` says the
        policy names: "Montreal" gives Quebec if the policy names Quebec, else Canada; "Portland,
        Oregon" gives Oregon, never the contiguous United States that would point at another zone."""
        terms: list[str] = []
        for mention in self.mentions(text):
            if mention.kind != "place":
                continue
            place = self.places[mention.target]
            for name in (place.name, *place.within):
                if known(name):
                    if name not in terms:
                        terms.append(name)
                    break
        return terms

    def plant_conflict(self, question: str, entry_text: str) -> str:
        """Why an entry about `entry_text` cannot answer a question about `question`'s plant ("" when it can).

        The entry may answer when it names the question's plant, or a group the plant belongs to, or
        no plant at all (a general entry such as "How do I increase humidity?")."""
        asked = self.plants_in(question)
        if not asked:
            return ""
        entry_plants = self.plants_in(entry_text)
        if asked & entry_plants:
            return ""
        entry_groups = self.groups_in(entry_text) | {self.plants[p].group for p in entry_plants if p in self.plants}
        asked_groups = {self.plants[p].group for p in asked if p in self.plants}
        if not entry_plants and (not entry_groups or asked_groups & entry_groups):
            return ""  # the entry speaks of the plant's group, or of plants in general
        return f"the question is about {', '.join(sorted(asked))}, the entry about " + (
            ", ".join(sorted(entry_plants)) or ", ".join(sorted(entry_groups)))


def load_glossary(path: Path | None) -> Glossary:
    return Glossary.load(path) if path is not None else Glossary.empty()
