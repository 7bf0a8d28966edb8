"""The router's labelled examples: topics from the seed file plus staff labels from the log.

The router learns *topics* (watering, shipping times, "where is my order"), each belonging to one
route, because a route is a union of unrelated topics and a linear model over the three routes
underfits (DESIGN.md, "Baselines to beat"). The seed file is edited by a support team, so every
mistake in it gets an error that names the topic and the fix instead of a stack trace.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.config import ROUTES
from bot.errors import ConfigError

log = logging.getLogger(__name__)

STAFF_TOPIC_PREFIX = "staff:"


@dataclass(frozen=True)
class Topic:
    name: str
    route: str
    description: str
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    """One labelled question; `source` is "seed" or "staff" (staff labels weigh more)."""

    text: str
    topic: str
    route: str
    source: str = "seed"
    weight: float = 1.0


def load_seed_topics(path: Path) -> list[Topic]:
    """Read and validate the seed routes file; every problem names the topic and the fix."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"router.seed_file: {path} does not exist (create it from the shipped "
            "data/seed_routes.yaml or point router.seed_file at your file)"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"router.seed_file: {path} is not valid YAML ({exc}); fix the syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"router.seed_file: {path} is not UTF-8 text; save it as UTF-8") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("topics"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'topics:' list (see data/seed_routes.yaml)")
    topics: list[Topic] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw["topics"]):
        where = f"{path}: topics[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: each topic is a mapping with name, route and examples")
        unknown = sorted(set(entry) - {"name", "route", "description", "examples"})
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; use name, route, description, examples")
        name = str(entry.get("name") or "").strip()
        if not name:
            raise ConfigError(f"{where}: the topic has no name (add name: <short_snake_case>)")
        where = f"{path}: topic {name!r}"
        if name.startswith(STAFF_TOPIC_PREFIX):
            raise ConfigError(f"{where}: names starting with {STAFF_TOPIC_PREFIX!r} are reserved for staff labels")
        if name in seen:
            raise ConfigError(f"{where}: the name is used twice; topic names must be unique")
        seen.add(name)
        route = entry.get("route")
        if route not in ROUTES:
            raise ConfigError(f"{where}: route {route!r} is not one of {list(ROUTES)}")
        examples = entry.get("examples")
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise ConfigError(f"{where}: examples must be a list of questions (strings)")
        cleaned = tuple(dict.fromkeys(e.strip() for e in examples if e.strip()))
        if len(cleaned) < 2:
            raise ConfigError(f"{where}: needs at least 2 distinct example questions, has {len(cleaned)}")
        topics.append(Topic(name, str(route), str(entry.get("description") or ""), cleaned))
    if not topics:
        raise ConfigError(f"{path}: the 'topics:' list is empty; add at least one topic per route")
    missing = [r for r in ROUTES if not any(t.route == r for t in topics)]
    if missing:
        log.warning("seed file %s has no topic for route(s) %s; they can only be chosen as a fallback",
                    path, ", ".join(missing))
    return topics


def seed_examples(topics: Iterable[Topic]) -> list[Example]:
    return [Example(text, t.name, t.route) for t in topics for text in t.examples]


def fingerprint(examples: Sequence[Example]) -> str:
    """Short content hash: names a zero-shot router, and tells whether a cache still fits."""
    payload = json.dumps([[e.text, e.topic, e.route, e.weight] for e in examples], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:10]


def load_domain_questions(path: Path | None, limit: int = 2000) -> list[str]:
    """User questions of the domain model's training set, for the "domain similarity" signal.

    The file belongs to the training loop (JSONL of chat messages); a missing or odd file only
    removes this one signal, so it is read leniently and never stops the router.
    """
    if path is None or not path.is_file():
        return []
    questions: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("cannot read %s for the domain-similarity signal (%s); skipping it", path, exc)
        return []
    for line in lines:
        if len(questions) >= limit:
            break
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        messages = record.get("messages")
        if isinstance(messages, list):
            for message in messages:
                if isinstance(message, dict) and message.get("role") == "user":
                    content = message.get("content")
                    if isinstance(content, str) and content.strip():
                        questions.append(content.strip())
                        break
            continue
        for key in ("question", "prompt", "instruction"):
            value = record.get(key)
            if isinstance(value, str) and value.strip():
                questions.append(value.strip())
                break
    return questions
