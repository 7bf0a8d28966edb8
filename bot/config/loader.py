"""Where the settings come from: defaults < config.toml < environment (`SUPPORTBOT_SECTION__KEY`)
< CLI flags. The schema is `bot.config.schema`.

This is the only module that reads `os.environ`. Settings are built once at the entry point
(`load_settings`) and passed down, so tests can build their own without touching the process.
"""

from __future__ import annotations

import json
import logging
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bot.config.schema import SECRET_ENV, Secrets, Settings, _Section
from bot.errors import ConfigError

log = logging.getLogger(__name__)

# Keys that no longer exist, with what replaced them: an old config.toml or environment still
# loads, and the log says what to change, instead of the strict schema refusing the whole file.
RETIRED_KEYS: dict[tuple[str, str], str] = {
    ("domain", "stream_interval_s"): "slack.stream_update_interval_s alone sets how often Slack edits "
    "a streamed answer",
}
# Keys that moved: the old name still works, with a warning naming the new one.
MOVED_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("domain", "server_url"): ("domain", "server", "url"),
    ("domain", "server_timeout_s"): ("domain", "server", "timeout_s"),
    ("domain", "server_retries"): ("domain", "server", "retries"),
    ("domain", "server_model"): ("domain", "server", "model"),
    ("domain", "hf_dtype"): ("domain", "hf", "dtype"),
    ("domain", "hf_quantization"): ("domain", "hf", "quantization"),
    ("domain", "hf_static_cache"): ("domain", "hf", "static_cache"),
    ("domain", "merge_adapter"): ("domain", "hf", "merge_adapter"),
    ("domain", "llamacpp_n_ctx"): ("domain", "llamacpp", "n_ctx"),
    ("domain", "llamacpp_threads"): ("domain", "llamacpp", "threads"),
    ("domain", "guard_contact_points"): ("domain", "guard", "contact_points"),
    ("domain", "guard_min_words_left"): ("domain", "guard", "min_words_left"),
}

ENV_PREFIX = "SUPPORTBOT_"
CONFIG_ENV = "SUPPORTBOT_CONFIG"
DEFAULT_CONFIG_NAME = "config.toml"


def _path_fields() -> set[tuple[str, str]]:
    """Every Path-typed key: resolved against the config file's folder when relative."""
    found = set()
    for section, field_info in Settings.model_fields.items():
        model = field_info.annotation
        if not (isinstance(model, type) and issubclass(model, _Section)):
            continue
        for key, sub in model.model_fields.items():
            if sub.annotation in (Path, Path | None):
                found.add((section, key))
    return found


def load_settings(
    path: Path | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings once at an entry point.

    `path` None means `$SUPPORTBOT_CONFIG`, else `./config.toml` if present, else defaults.
    `overrides` are CLI flags as dotted keys (`{"knowledge.dir": "docs/"}`).
    """
    env = os.environ if env is None else env
    explicit = path is not None or CONFIG_ENV in env
    config_path = Path(path if path is not None else env.get(CONFIG_ENV, DEFAULT_CONFIG_NAME))
    raw: dict[str, Any] = {}
    if config_path.is_file():
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML ({exc}); fix the syntax") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{config_path}: not UTF-8 text; save it as UTF-8") from None
    elif explicit:
        raise ConfigError(
            f"config file not found: {config_path} (create it from the project's config.toml, "
            f"or pass --config PATH / set {CONFIG_ENV})"
        )
    base_dir = config_path.resolve().parent if config_path.is_file() else Path.cwd()
    if "secrets" in raw:
        raise ConfigError(
            "secrets: not allowed in the config file; set "
            + ", ".join(SECRET_ENV.values())
            + " in the environment"
        )
    _reject_secret_keys(raw)
    _upgrade_old_keys(raw, "config.toml")
    _merge(raw, _upgrade_old_keys(_env_overrides(env), "the environment"))
    flags: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        _merge(flags, _nest(dotted.split("."), value))
    _merge(raw, _upgrade_old_keys(flags, "the command line"))
    _resolve_paths(raw, base_dir)
    secrets = Secrets(
        **{name: env[var] for name, var in SECRET_ENV.items() if env.get(var)}
    )
    try:
        return Settings(**raw, secrets=secrets, config_path=config_path if config_path.is_file() else None)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def _upgrade_old_keys(layer: dict[str, Any], origin: str) -> dict[str, Any]:
    """Drop retired keys and move renamed ones in one source of settings, before sources merge,
    so the environment still beats config.toml whichever spelling each uses."""
    for (section, key), instead in RETIRED_KEYS.items():
        values = layer.get(section)
        if isinstance(values, dict) and key in values:
            del values[key]
            log.warning("config: %s.%s (in %s) is no longer used (%s); remove it", section, key, origin, instead)
    for (section, key), target in MOVED_KEYS.items():
        values = layer.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        value = values.pop(key)
        node = layer
        for part in target[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(target[:-1])}: must be a table of settings, got {type(node).__name__}")
        new_name = ".".join(target)
        if target[-1] in node:
            raise ConfigError(f"{section}.{key} and {new_name} are both set in {origin}; keep {new_name} only")
        node[target[-1]] = value
        log.warning("config: %s.%s (in %s) is now %s (environment: %s%s); the old name still works "
                    "in this release", section, key, origin, new_name, ENV_PREFIX,
                    "__".join(part.upper() for part in target))
    return layer


def _reject_secret_keys(raw: Mapping[str, Any]) -> None:
    secretish = {"token", "bot_token", "app_token", "signing_secret", "password", "secret"}
    for section, values in raw.items():
        if isinstance(values, Mapping):
            for key in values:
                if key in secretish:
                    raise ConfigError(
                        f"{section}.{key}: secrets are read only from the environment; remove it "
                        f"and set one of {', '.join(SECRET_ENV.values())}"
                    )


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """`SUPPORTBOT_KNOWLEDGE__TOP_K=6` → {"knowledge": {"top_k": "6"}}; JSON values for lists."""
    out: dict[str, Any] = {}
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        keys = [k.lower() for k in var[len(ENV_PREFIX) :].split("__")]
        parsed: Any = value
        if value.startswith(("[", "{")):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                raise ConfigError(
                    f"{'.'.join(keys)}: environment variable {var} is not valid JSON; "
                    "write lists as [\"a\", \"b\"]"
                ) from None
        _merge(out, _nest(keys, parsed))
    return out


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    node: Any = value
    for key in reversed(keys):
        node = {key: node}
    return node


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value


def _resolve_paths(raw: dict[str, Any], base_dir: Path) -> None:
    path_fields = _path_fields()
    for section, key in path_fields:
        values = raw.get(section)
        if isinstance(values, dict) and isinstance(values.get(key), str):
            if values[key] == "":
                values[key] = None
                continue
            p = Path(values[key]).expanduser()
            values[key] = p if p.is_absolute() else base_dir / p
    # Defaults are relative to the config file's folder too.
    defaults = Settings()
    for section, key in path_fields:
        values = raw.setdefault(section, {})
        if not isinstance(values, dict) or key in values:
            continue
        default = getattr(getattr(defaults, section), key)
        if isinstance(default, Path) and not default.is_absolute():
            values[key] = base_dir / default


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: `section.key: problem (fix)`."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        kind = err["type"]
        if kind == "extra_forbidden":
            section = err["loc"][:-1]
            known = _known_keys(section)
            hint = f"remove it or use one of: {', '.join(known)}" if known else "remove it"
            lines.append(f"{loc}: unknown key ({hint})")
        elif kind == "missing":
            lines.append(f"{loc}: required key is missing (add it)")
        else:
            got = err.get("input")
            shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
            lines.append(f"{loc}: {err['msg']}, got {shown} (fix the value in config.toml or the environment)")
    return "\n".join(lines)


def _known_keys(section: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Settings
    for part in section:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return []
        model = field.annotation
    return [name for name, f in model.model_fields.items() if not f.exclude]
