"""Config errors a user meets: each names the key and the fix; the CLI exits 2 without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_is_valid_and_matches_defaults() -> None:
    settings = load_settings(REPO / "config.toml", env={})
    assert settings.knowledge.dir == REPO / "knowledge"
    assert settings.state_dir == REPO / "var"
    assert settings.router.fallback_order == ["escalate"]


def test_wrong_type_names_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[knowledge]\ntop_k = 'many'\n"), env={})
    assert str(err.value).startswith("knowledge.top_k:")
    assert "'many'" in str(err.value)


def test_unknown_key_lists_known_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[knowledge]\ntopk = 3\n"), env={})
    message = str(err.value)
    assert message.startswith("knowledge.topk: unknown key")
    assert "top_k" in message


def test_a_retired_key_still_loads_and_the_log_says_what_replaced_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write(tmp_path, "[domain]\nstream_interval_s = 1.0\nmax_new_tokens = 99\n")
    settings = load_settings(config, env={"SUPPORTBOT_DOMAIN__STREAM_INTERVAL_S": "2"})
    assert settings.domain.max_new_tokens == 99  # the rest of the section still applies
    warnings = [r.getMessage() for r in caplog.records if "stream_interval_s" in r.getMessage()]
    assert len(warnings) == 2  # one per place that still sets it
    assert all("no longer used" in w and "slack.stream_update_interval_s" in w for w in warnings)
    assert any("config.toml" in w for w in warnings) and any("the environment" in w for w in warnings)


def test_domain_keys_under_their_old_flat_names_still_load_where_they_moved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`[domain] hf_dtype` became `[domain.hf] dtype`: a config written for the flat names keeps
    working, and the log names the new key and its environment variable."""
    config = write(tmp_path, '[domain]\nhf_dtype = "float32"\nserver_url = "http://vllm:8000/v1"\n'
                             "guard_min_words_left = 9\nllamacpp_threads = 3\n")
    settings = load_settings(config, env={"SUPPORTBOT_DOMAIN__SERVER_RETRIES": "5"})
    assert settings.domain.hf.dtype == "float32"
    assert settings.domain.server.url == "http://vllm:8000/v1" and settings.domain.server.retries == 5
    assert settings.domain.guard.min_words_left == 9 and settings.domain.llamacpp.threads == 3
    messages = [r.getMessage() for r in caplog.records]
    assert any("domain.hf_dtype (in config.toml) is now domain.hf.dtype" in m
               and "SUPPORTBOT_DOMAIN__HF__DTYPE" in m for m in messages)
    assert any("domain.server_retries (in the environment) is now domain.server.retries" in m for m in messages)


def test_the_environment_still_beats_the_file_whichever_spelling_each_uses(tmp_path: Path) -> None:
    config = write(tmp_path, '[domain.hf]\ndtype = "bfloat16"\n')
    assert load_settings(config, env={"SUPPORTBOT_DOMAIN__HF_DTYPE": "float32"}).domain.hf.dtype == "float32"
    config = write(tmp_path, '[domain]\nhf_dtype = "float32"\n')
    assert load_settings(config, env={"SUPPORTBOT_DOMAIN__HF__DTYPE": "bfloat16"}).domain.hf.dtype == "bfloat16"


def test_old_and_new_name_in_one_file_is_refused_naming_both(tmp_path: Path) -> None:
    config = write(tmp_path, '[domain]\nhf_dtype = "float32"\n\n[domain.hf]\ndtype = "bfloat16"\n')
    with pytest.raises(ConfigError, match=r"domain\.hf_dtype and domain\.hf\.dtype are both set in config\.toml"):
        load_settings(config, env={})


def test_missing_explicit_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "nope.toml", env={})
    assert "config file not found" in str(err.value)
    assert "--config" in str(err.value)


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "[slack]\nbot_token = 'xoxb-123'\n"), env={})
    assert "SLACK_BOT_TOKEN" in str(err.value)


def test_environment_overrides_file_and_parses_lists(tmp_path: Path) -> None:
    path = write(tmp_path, "[knowledge]\ntop_k = 3\n")
    env = {
        "SUPPORTBOT_KNOWLEDGE__TOP_K": "7",
        "SUPPORTBOT_SLACK__STAFF_USER_IDS": '["U1", "U2"]',
        "SLACK_BOT_TOKEN": "xoxb-secret",
    }
    settings = load_settings(path, env=env)
    assert settings.knowledge.top_k == 7
    assert settings.slack.staff_user_ids == ["U1", "U2"]
    assert settings.secrets.slack_bot_token is not None
    assert "xoxb-secret" not in str(settings.masked())


def test_an_empty_environment_value_sets_an_empty_string(tmp_path: Path) -> None:
    """Compose files pass optional settings through as `VAR=` when the operator leaves them unset."""
    settings = load_settings(write(tmp_path, '[slack]\nstaff_channel = "C1"\n'), env={"SUPPORTBOT_SLACK__STAFF_CHANNEL": ""})
    assert settings.slack.staff_channel == ""


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[knowledge]\ndir = 'docs'\n"), env={})
    assert settings.knowledge.dir == tmp_path / "docs"
    assert settings.state_dir == tmp_path / "var"


def test_database_password_comes_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[database]\nurl = 'postgresql+psycopg://bot@db:5432/support'\n")
    settings = load_settings(path, env={"SUPPORTBOT_DATABASE_PASSWORD": "s3cret"})
    assert settings.database_url == "postgresql+psycopg://bot:s3cret@db:5432/support"
    assert "s3cret" not in str(settings.masked())


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        timeout=120,
    )


def test_cli_config_check_bad_type_is_one_line_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "[slack]\nhttp_port = 'eighty'\n")
    result = run_cli("--config", str(path), "config", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: slack.http_port: Input should be a valid integer, unable to parse string as an "
        "integer, got 'eighty' (fix the value in config.toml or the environment)"
    ]
    assert "Traceback" not in result.stderr


def test_cli_config_check_masks_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli.main", "--config", str(path), "config", "check", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "SLACK_SIGNING_SECRET": "topsecret"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "topsecret" not in result.stdout
    assert '"SLACK_SIGNING_SECRET": "***"' in result.stdout
    assert '"SLACK_BOT_TOKEN": "(unset)"' in result.stdout
