"""Reading docker-compose.yml the way Docker Compose does, for tests that cannot run Docker.

No Docker daemon (and no Compose v2) exists where the tests run, so the tests read the file
themselves: YAML with merge keys, then Compose's variable interpolation (`${VAR}`,
`${VAR:-default}`, `${VAR:?error}`, `$$` for a literal dollar). A `$` that Compose would
reject as an invalid template is an error here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"

_TEMPLATE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<invalid>))"
)


class InterpolationError(ValueError):
    """What `docker compose config` would refuse: a bad template or a missing required variable."""


def load_raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml must be a mapping"
    return data


def interpolate_text(text: str, variables: Mapping[str, str]) -> str:
    """Substitute one string as Compose does, reading `variables` as the `.env` file."""

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped") is not None:
            return "$"
        if match.group("named") is not None:
            return variables.get(match.group("named"), "")
        name = match.group("braced")
        if name is None:
            raise InterpolationError(f"invalid template near {text[match.start():match.start() + 20]!r}")
        op, arg = match.group("op"), match.group("arg") or ""
        value = variables.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset_or_empty else str(value)
        if op in (":?", "?"):
            if unset_or_empty:
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return _TEMPLATE.sub(replace, text)


def interpolate(node: Any, variables: Mapping[str, str]) -> Any:
    """Interpolate every string value (never keys) in a parsed compose document."""
    if isinstance(node, str):
        return interpolate_text(node, variables)
    if isinstance(node, list):
        return [interpolate(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, variables) for key, value in node.items()}
    return node


def referenced_variables(node: Any) -> set[str]:
    """Names of all variables the file reads from the environment / `.env`."""
    found: set[str] = set()
    if isinstance(node, str):
        for match in _TEMPLATE.finditer(node):
            name = match.group("braced") or match.group("named")
            if name:
                found.add(name)
    elif isinstance(node, list):
        for item in node:
            found |= referenced_variables(item)
    elif isinstance(node, dict):
        for value in node.values():
            found |= referenced_variables(value)
    return found


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's `environment`, whether written as a mapping or as a KEY=VALUE list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def mounts(service: Mapping[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path) for short-syntax volumes."""
    found = {}
    for entry in service.get("volumes") or []:
        source, target = str(entry).split(":")[:2]
        found[target] = source
    return found


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` in a command list."""
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None
