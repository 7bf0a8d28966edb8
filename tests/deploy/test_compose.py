"""docker-compose.yml: the services the scaling guide promises, wired to real config keys.

There is no Docker daemon where these tests run, so the file is read as Compose reads it
(tests/deploy/compose_file.py) and every `SUPPORTBOT_*` variable in it is fed through the real
`load_settings`. What an operator would notice is checked: a variable that is not a config key,
a service pointing at the wrong host, port or path, a secret written into the file, a missing
`.env` entry that Compose would not name.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from pydantic import TypeAdapter
from typer.testing import CliRunner

from bot.config import CONFIG_ENV, ENV_PREFIX, SECRET_ENV, Settings, load_settings
from bot.slack.server import HEALTH_PATH
from tests.deploy.compose_file import (
    REPO,
    InterpolationError,
    environment,
    flag_value,
    interpolate,
    load_raw,
    mounts,
    referenced_variables,
)

# What an operator writes into .env: the required secrets, and the proxy's port.
OPERATOR_ENV = {
    "SUPPORTBOT_DATABASE_PASSWORD": "pg-pass-for-tests",
    "SLACK_BOT_TOKEN": "xoxb-for-tests",
    "SLACK_SIGNING_SECRET": "signing-secret-for-tests",
    "PROXY_PORT": "8443",
}
REQUIRED = ("SUPPORTBOT_DATABASE_PASSWORD", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
MINIMAL_ENV = {name: OPERATOR_ENV[name] for name in REQUIRED}
APP_SERVICES = ("indexer", "bot", "train")  # run the supportbot image with settings
IMAGE_WORKDIR = Path("/app")  # Dockerfile: WORKDIR /app, config.toml copied there


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(load_raw(), OPERATOR_ENV)


@pytest.fixture(scope="module")
def image_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's config.toml at the image's path layout (relative paths resolve under /app)."""
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert f"WORKDIR {IMAGE_WORKDIR}" in dockerfile and "config.toml" in dockerfile
    root = tmp_path_factory.mktemp("image") / "app"
    root.mkdir()
    shutil.copy(REPO / "config.toml", root / "config.toml")
    return root / "config.toml"


def service_settings(compose: dict[str, Any], name: str, config: Path) -> Settings:
    return load_settings(config, env=environment(compose["services"][name]))


def in_image(path: Path, config: Path) -> Path:
    """Where a path the test's settings resolved lies inside the container."""
    try:
        return IMAGE_WORKDIR / path.relative_to(config.parent)
    except ValueError:
        return path


# --- the shape of the deployment ------------------------------------------------------------


def test_compose_has_every_service_of_the_grown_up_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "chroma", "inference", "bot", "indexer", "train", "proxy", "adapter-sync"} <= set(services)
    assert services["train"]["profiles"] == ["training"]  # never started by a plain `up`
    always_on = [name for name, svc in services.items() if "profiles" not in svc]
    assert "train" not in always_on and "bot" in always_on
    assert services["postgres"]["image"].startswith("postgres:")
    assert "postgres-data" in mounts(services["postgres"]).values()
    assert mounts(services["chroma"])["/data"] == "chroma-data"


def test_bot_runs_two_replicas_reached_only_through_the_proxy(compose: dict[str, Any], image_config: Path) -> None:
    services = compose["services"]
    bot = services["bot"]
    settings = service_settings(compose, "bot", image_config)
    assert bot["deploy"]["replicas"] == 2
    assert "ports" not in bot and "container_name" not in bot  # replicas would collide
    assert bot["command"] == ["supportbot", "serve"]
    assert settings.slack.mode == "http"
    assert settings.secrets.slack_bot_token is not None and settings.secrets.slack_signing_secret is not None
    # The health check asks the port and path the bot really serves.
    probe = " ".join(bot["healthcheck"]["test"])
    assert f"127.0.0.1:{settings.slack.http_port}{HEALTH_PATH}" in probe
    # The proxy forwards to every replica's port and publishes the operator's port.
    proxy = services["proxy"]
    caddyfile = compose["configs"][proxy["configs"][0]["source"]]["content"]
    assert proxy["configs"][0]["target"] == "/etc/caddy/Caddyfile"
    assert f"dynamic a bot {settings.slack.http_port}" in caddyfile
    listen = next(line.split()[0] for line in caddyfile.splitlines() if line.startswith(":"))
    assert proxy["ports"] == [f"{OPERATOR_ENV['PROXY_PORT']}{listen}"]


def guide_env_file(name: str) -> dict[str, str]:
    """KEY=VALUE lines of the ```dotenv block in docs/scaling.md whose first line is `# <name>`."""
    guide = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    for block in re.findall(r"```dotenv\n(.*?)```", guide, flags=re.S):
        lines = block.strip().splitlines()
        if lines and lines[0].strip() == f"# {name}":
            pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
            return {key.strip(): value.strip() for key, value in pairs}
    raise AssertionError(f"docs/scaling.md has no ```dotenv block starting with '# {name}'")


def container_env(service: dict[str, Any], settings_file: dict[str, str]) -> dict[str, str]:
    """What the container sees: supportbot.env (if the service reads it), then `environment`."""
    reads_file = any(isinstance(e, dict) and e.get("path") == "supportbot.env" for e in service.get("env_file") or [])
    return {**(settings_file if reads_file else {}), **environment(service)}


def assert_took_effect(settings: Settings, env: dict[str, str]) -> int:
    """Every SUPPORTBOT_* variable in `env` is a secret or a config key now holding its value."""
    checked = 0
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        if var in SECRET_ENV.values():
            field = next(name for name, env_name in SECRET_ENV.items() if env_name == var)
            assert getattr(settings.secrets, field).get_secret_value() == value, var
            continue
        assert var != CONFIG_ENV and "__" in var, f"{var} is neither a SECTION__KEY override nor a secret"
        *tables, key = (part.lower() for part in var[len(ENV_PREFIX):].split("__"))
        model: Any = settings
        for table in tables:  # SUPPORTBOT_DOMAIN__SERVER__URL: [domain.server] url
            model = getattr(model, table)
        assert key in type(model).model_fields, f"{var}: [{'.'.join(tables)}] has no key {key!r}"
        parsed: Any = json.loads(value) if value[:1] in ("[", "{") else value
        expected = TypeAdapter(type(model).model_fields[key].annotation).validate_python(parsed)
        assert getattr(model, key) == expected, var
        checked += 1
    return checked


@pytest.mark.parametrize("with_settings_file", [False, True], ids=["env-only", "with-supportbot.env"])
@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_supportbot_variable_is_a_config_key_that_takes_effect(
    with_settings_file: bool, service: str, image_config: Path
) -> None:
    compose = interpolate(load_raw(), MINIMAL_ENV)
    svc = compose["services"][service]
    settings_file = guide_env_file("supportbot.env") if with_settings_file else {}
    settings = load_settings(image_config, env=container_env(svc, settings_file))  # unknown key: ConfigError
    assert assert_took_effect(settings, environment(svc)) >= 8


def test_settings_example_in_the_guide_reaches_the_bot(compose: dict[str, Any], image_config: Path) -> None:
    example = guide_env_file("supportbot.env")
    assert "SUPPORTBOT_SLACK__STAFF_CHANNEL" in example
    bot = compose["services"]["bot"]
    settings = load_settings(image_config, env=container_env(bot, example))
    overridden = set(example) & set(environment(bot))
    assert not overridden, f"the guide's example sets {overridden}, which docker-compose.yml overrides"
    assert assert_took_effect(settings, example) == len(example)


def test_env_example_in_the_guide_is_what_compose_needs() -> None:
    example = guide_env_file(".env")
    assert set(REQUIRED) <= set(example)
    assert set(example) <= referenced_variables(load_raw())  # nothing the file would ignore
    interpolate(load_raw(), example)  # and nothing missing


def test_services_agree_on_hosts_ports_and_paths(compose: dict[str, Any], image_config: Path) -> None:
    from bot.registry import adapter_registry

    services = compose["services"]
    settings = service_settings(compose, "bot", image_config)
    # Conversation log: the postgres service, its user and database, the operator's password.
    db = urlparse(settings.database_url)
    pg_env = environment(services["postgres"])
    assert (db.hostname, db.port, db.path.lstrip("/")) == ("postgres", 5432, pg_env["POSTGRES_DB"])
    assert db.username == pg_env["POSTGRES_USER"]
    assert db.password == pg_env["POSTGRES_PASSWORD"] == OPERATOR_ENV["SUPPORTBOT_DATABASE_PASSWORD"]
    assert settings.database.url.startswith("postgresql+psycopg://")
    # Knowledge index: the chroma service on the port its health check probes.
    chroma = urlparse(settings.knowledge.chroma_url)
    assert chroma.hostname == "chroma"
    assert f"/dev/tcp/127.0.0.1/{chroma.port}" in " ".join(services["chroma"]["healthcheck"]["test"])
    # Domain model: the inference service, its port, the name it gives the base model.
    inference = services["inference"]
    args = inference["command"]
    server = urlparse(settings.domain.server.url)
    assert settings.domain.backend == "openai"
    assert (server.hostname, server.port, server.path) == ("inference", int(flag_value(args, "--port") or 0), "/v1")
    assert settings.domain.server.model == flag_value(args, "--served-model-name")
    # The adapters are trained on the same base model folder vLLM serves, from the same volume.
    base = settings.models.base_llm_path
    assert base is not None and str(base) == flag_value(args, "--model")
    train = services["train"]
    assert service_settings(compose, "train", image_config).models.base_llm_path == base
    assert mounts(train)[str(base.parent)] == mounts(inference)[str(base.parent)] == "models"
    # One state volume at one path everywhere, so a registry path means the same file in vLLM.
    state_dir = str(in_image(settings.state_dir, image_config))
    for name in ("bot", "indexer", "train", "inference", "adapter-sync"):
        assert mounts(services[name]).get(state_dir) == "state", name
    versions = in_image(adapter_registry(settings).versions_dir, image_config)
    assert environment(services["adapter-sync"])["ADAPTERS_DIR"] == str(versions)
    assert environment(services["adapter-sync"])["INFERENCE_URL"] == f"http://inference:{server.port}"
    assert int(flag_value(args, "--max-lora-rank") or 0) >= settings.training.lora_r


def test_only_the_indexer_job_writes_the_knowledge_index(compose: dict[str, Any], image_config: Path) -> None:
    services = compose["services"]
    bot, indexer = services["bot"], services["indexer"]
    bot_settings = service_settings(compose, "bot", image_config)
    assert bot_settings.knowledge.watch is False
    assert indexer["command"] == ["supportbot", "index"]
    assert indexer.get("restart") == "no"
    assert bot["depends_on"]["indexer"]["condition"] == "service_completed_successfully"
    knowledge = str(in_image(bot_settings.knowledge.dir, image_config))
    assert f"./knowledge:{knowledge}:ro" in bot["volumes"]  # replicas cannot even touch the files
    assert f"./knowledge:{knowledge}:ro" in indexer["volumes"]
    for name, svc in services.items():
        if name != "indexer":
            assert "index" not in (svc.get("command") or []), name


def test_gpu_services_reserve_a_gpu_and_serve_lora_adapters(compose: dict[str, Any], image_config: Path) -> None:
    services = compose["services"]
    for name in ("inference", "train"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
    inference = services["inference"]
    assert "--enable-lora" in inference["command"]
    assert environment(inference)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "/health" in " ".join(inference["healthcheck"]["test"])
    train = services["train"]
    assert train["command"] == ["supportbot", "train", "schedule"]
    assert service_settings(compose, "train", image_config).training.device == "cuda"
    assert train["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_supportbot_command_in_the_file_exists(compose: dict[str, Any]) -> None:
    from bot.cli.main import app

    runner = CliRunner()
    for name, svc in compose["services"].items():
        command = svc.get("command")
        if not (isinstance(command, list) and command[:1] == ["supportbot"]):
            continue
        result = runner.invoke(app, [*command[1:], "--help"])
        assert result.exit_code == 0, f"{name}: `{' '.join(command)}` is not a supportbot command\n{result.output}"


def test_chroma_image_is_the_version_of_the_chromadb_client() -> None:
    import chromadb

    chroma = load_raw()["services"]["chroma"]
    assert chroma["image"] == f"chromadb/chroma:{chromadb.__version__}"
    assert "/api/v2/heartbeat" in " ".join(chroma["healthcheck"]["test"])


# --- secrets and the operator's .env ---------------------------------------------------------


def test_secrets_are_only_read_from_the_operators_env_file() -> None:
    raw = load_raw()
    text = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    for token_prefix in ("xoxb-", "xoxp-", "xapp-"):
        assert token_prefix not in text
    secret_names = set(SECRET_ENV.values()) | {"POSTGRES_PASSWORD"}
    for name, svc in raw["services"].items():
        for var, value in environment(svc).items():
            if var in secret_names:
                reference = re.fullmatch(r"\$\{(\w+)(?::?[-?][^}]*)?\}", value)
                assert reference is not None, f"{name}.{var} holds a literal value, not a ${{...}} reference"
                assert reference.group(1) in SECRET_ENV.values(), f"{name}.{var}"


def test_compose_names_the_missing_secret_when_env_file_is_incomplete() -> None:
    with pytest.raises(InterpolationError, match="SUPPORTBOT_DATABASE_PASSWORD"):
        interpolate(load_raw(), {})
    for missing in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        partial = {k: v for k, v in MINIMAL_ENV.items() if k != missing}
        with pytest.raises(InterpolationError, match=missing):
            interpolate(load_raw(), partial)


def test_every_variable_is_documented_in_the_scaling_guide() -> None:
    guide = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    raw = load_raw()
    names = referenced_variables(raw)
    for svc in raw["services"].values():
        names |= {var for var in environment(svc) if var.startswith((ENV_PREFIX, "SLACK_", "VLLM_"))}
    assert names >= set(REQUIRED)
    undocumented = sorted(name for name in names if f"`{name}" not in guide)
    assert not undocumented, f"docs/scaling.md does not mention {undocumented}"
