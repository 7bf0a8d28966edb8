"""Whatever a customer types reaches the pipeline cleaned, the same on every channel; secrets never print.

Bad bytes become U+FFFD, control characters (NUL first: Postgres refuses it) are dropped, an
over-long question gets a fixed polite reply without any model, and passwords inside URLs are
shown as *** in `config check`, errors and logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.errors import StoreError
from bot.interfaces import AskContext, Draft, PartialCallback, RouteDecision
from bot.masking import MaskUrlPasswords, mask_url_password
from bot.pipeline import Pipeline
from bot.question_input import clean_question
from tests.foundation.hostile import output_of, run_cli
from tests.foundation.test_cli_end_to_end import write_config
from tests.servers.postgres import postgres_server


class RecordingRouter:
    def __init__(self) -> None:
        self.questions: list[str] = []

    def decide(self, question: str) -> RouteDecision:
        self.questions.append(question)
        return RouteDecision(route="retrieval", confidence=0.9, reason="test")


class RecordingAnswerer:
    def __init__(self, route: str) -> None:
        self.route = route
        self.questions: list[str] = []

    def answer(self, question: str, ctx: AskContext, on_partial: PartialCallback | None = None) -> Draft:
        self.questions.append(question)
        return Draft(text="Returns within 30 days.")


def recording_pipeline(settings: Settings, url: str | None = None) -> tuple[Pipeline, RecordingRouter, RecordingAnswerer]:
    router, retrieval = RecordingRouter(), RecordingAnswerer("retrieval")
    store = ConversationStore.open(url or settings.database_url)
    pipeline = Pipeline.from_settings(settings, store, router, {"retrieval": retrieval, "escalate": EscalationAnswerer(settings.app.company_name)})
    return pipeline, router, retrieval


# --- cleaning ------------------------------------------------------------------------------------


def test_invalid_utf8_from_argv_or_stdin_becomes_replacement_characters() -> None:
    from_argv = b"caf\xc3 \xff\xfe ok".decode("utf-8", "surrogateescape")  # what Python hands us
    assert clean_question(from_argv) == "caf\ufffd \ufffd\ufffd ok"
    assert clean_question("json \ud800 escape") == "json \ufffd escape"
    assert clean_question(b"\xc3\xa9t\xc3\xa9".decode("ascii", "surrogateescape")) == "été"  # C locale


def test_control_characters_are_dropped_but_lines_and_tabs_kept() -> None:
    assert clean_question("a\x00b\x07c\x1b[31md\x7f\x85e") == "abc[31mde"
    assert clean_question("line one\r\nline\ttwo\rthree") == "line one\nline\ttwo\nthree"


def test_every_channel_gets_the_cleaned_question(settings_factory: Callable[..., Settings]) -> None:
    pipeline, router, retrieval = recording_pipeline(settings_factory())
    raw = "Where\x00 is my\x1b order \udcff?"
    answer = pipeline.answer(raw, AskContext(channel="rasa", user="U\x00\udcff1"))
    assert router.questions == retrieval.questions == ["Where is my order \ufffd?"]
    turn = pipeline.store.get_turn(answer.turn_id)  # type: ignore[arg-type]
    assert turn is not None
    assert (turn.question, turn.user_id) == ("Where is my order \ufffd?", "U\ufffd1")


def test_over_long_question_gets_a_polite_reply_without_any_model_and_is_logged_cut(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(**{"app.max_question_chars": 200})
    pipeline, router, retrieval = recording_pipeline(settings)
    answer = pipeline.answer("Please read my story. " * 50)
    assert router.questions == [] and retrieval.questions == []
    assert answer.route == "escalate" and answer.reason == "question too long"
    assert "too long" in answer.text and "1,099 characters" in answer.text and "200" in answer.text
    turn = pipeline.store.get_turn(answer.turn_id)  # type: ignore[arg-type]
    assert turn is not None
    assert len(turn.question) == 200 and turn.question.startswith("Please read my story.")
    assert "over app.max_question_chars (200)" in turn.fallback_reason


def test_a_question_at_the_limit_is_answered(settings_factory: Callable[..., Settings]) -> None:
    pipeline, router, _ = recording_pipeline(settings_factory(**{"app.max_question_chars": 100}))
    assert pipeline.answer("x" * 100).route == "retrieval"
    assert router.questions == ["x" * 100]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.mark.slow
def test_nul_byte_is_stripped_and_the_turn_stored_on_postgres(
    settings_factory: Callable[..., Settings], pg_url: str
) -> None:
    pipeline, _, _ = recording_pipeline(settings_factory(), url=pg_url)
    answer = pipeline.answer("Do you ship\x00 to Canada?", AskContext(channel="slack", user="U\x001"))
    assert answer.turn_id is not None
    turn = pipeline.store.get_turn(answer.turn_id)
    assert turn is not None and (turn.question, turn.user_id) == ("Do you ship to Canada?", "U1")
    pipeline.store.close()


# --- the same through the real CLI (tiny model, real embedder, real SQLite) ------------------------


def logged_questions(tmp_path: Path) -> list[str]:
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'supportbot.db'}")
    with engine.connect() as conn:
        rows = [row[0] for row in conn.execute(text("SELECT question FROM turns ORDER BY id"))]
    engine.dispose()
    return rows


@pytest.mark.slow
def test_ask_with_invalid_utf8_in_argv_answers(tmp_path: Path, sample_knowledge: Path, tiny_llm_dir: Path) -> None:
    cfg = write_config(tmp_path, sample_knowledge, tiny_llm_dir)
    question = b"How long does shipping to Canada take? \xff\xfe"
    result = run_cli("--config", str(cfg), "ask", "--json", question, cwd=tmp_path)
    assert result.returncode == 0, output_of(result)[-2000:]
    assert "Traceback" not in output_of(result)
    answer = json.loads(result.stdout)
    assert answer["route"] == "retrieval" and answer["turn_id"] >= 1
    assert logged_questions(tmp_path) == ["How long does shipping to Canada take? \ufffd\ufffd"]


@pytest.mark.slow
def test_chat_keeps_the_session_through_bad_lines(tmp_path: Path, sample_knowledge: Path, tiny_llm_dir: Path) -> None:
    cfg = write_config(tmp_path, sample_knowledge, tiny_llm_dir)
    lines = [
        b"\xff\xfe\xfd not utf-8 at all",
        b"Do you ship\x00 to Canada?\x07",
        b"tell me everything " * 40,
        b"How long does shipping to Canada take?",
        b"exit",
    ]
    result = run_cli("--config", str(cfg), "chat", cwd=tmp_path, stdin=b"\n".join(lines) + b"\n",
                     env={"SUPPORTBOT_APP__MAX_QUESTION_CHARS": "300",
                          "PYTHONIOENCODING": "utf-8:strict"})  # as in a UTF-8 locale; C.UTF-8 is lenient
    out = output_of(result)
    assert result.returncode == 0, out[-2000:]
    assert "Traceback" not in out
    assert result.stdout.count(b"bot>") == 4
    assert b"too long for me to read" in result.stdout
    assert b"route=retrieval" in result.stdout
    questions = logged_questions(tmp_path)
    assert questions[0] == "\ufffd\ufffd\ufffd not utf-8 at all"
    assert questions[1] == "Do you ship to Canada?"
    assert len(questions[2]) == 300
    assert questions[3] == "How long does shipping to Canada take?"


# --- secrets ------------------------------------------------------------------------------------


def test_mask_url_password_keeps_everything_but_the_password() -> None:
    assert mask_url_password("postgresql+psycopg://bot:s3/cr%40t@db:5432/x") == "postgresql+psycopg://bot:***@db:5432/x"
    assert mask_url_password("redis://:pw@cache/0") == "redis://:***@cache/0"
    assert mask_url_password("http://chroma:8000") == "http://chroma:8000"
    assert mask_url_password("https://user@host/path") == "https://user@host/path"


SECRET_ENV = {
    "SUPPORTBOT_DATABASE__URL": "postgresql+psycopg://bot:hunter2@127.0.0.1:1/supportbot",
    "SUPPORTBOT_KNOWLEDGE__CHROMA_URL": "http://reader:chromapass@chroma:8000",
    "SUPPORTBOT_DOMAIN__SERVER__URL": "http://llm:llmpass@vllm:8000/v1",
    "SUPPORTBOT_DATABASE_PASSWORD": "envpass",
}
SECRETS = ("hunter2", "chromapass", "llmpass", "envpass")


@pytest.mark.parametrize("as_json", [False, True])
def test_config_check_never_prints_a_password(tmp_path: Path, as_json: bool) -> None:
    (tmp_path / "config.toml").write_text("", encoding="utf-8")
    args = ["--config", str(tmp_path / "config.toml"), "config", "check", *(["--json"] if as_json else [])]
    result = run_cli(*args, cwd=tmp_path, env=SECRET_ENV)
    out = output_of(result)
    assert result.returncode == 0, out
    assert not [secret for secret in SECRETS if secret in out]
    if as_json:
        data = json.loads(result.stdout)
        assert data["database"]["url"] == "postgresql+psycopg://bot:***@127.0.0.1:1/supportbot"
        assert data["knowledge"]["chroma_url"] == "http://reader:***@chroma:8000"
    else:
        assert "bot:***@127.0.0.1" in out


def test_store_error_never_shows_the_password(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as err:
        ConversationStore.open("postgresql+psycopg://bot:hunter2@127.0.0.1:1/supportbot")
    assert "hunter2" not in str(err.value)
    (tmp_path / "config.toml").write_text("", encoding="utf-8")
    result = run_cli("--config", str(tmp_path / "config.toml"), "train", "export", cwd=tmp_path, env=SECRET_ENV)
    assert result.returncode == 2
    assert "database.url: cannot open the conversation log" in output_of(result)
    assert not [secret for secret in SECRETS if secret in output_of(result)]


def test_chroma_url_error_from_the_cli_masks_the_password(tmp_path: Path) -> None:
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "config.toml").write_text(f'[knowledge]\ndir = "{tmp_path / "knowledge"}"\n', encoding="utf-8")
    env = {"SUPPORTBOT_KNOWLEDGE__CHROMA_URL": "ftp://reader:chromapass@chroma:8000", "SUPPORTBOT_APP__STATE_DIR": str(tmp_path / "var")}
    result = run_cli("--config", str(tmp_path / "config.toml"), "index", cwd=tmp_path, env=env)
    out = output_of(result)
    assert result.returncode == 2, out
    assert "knowledge.chroma_url" in out and "ftp://reader:***@chroma:8000" in out
    assert "chromapass" not in out


def test_log_lines_and_tracebacks_never_show_a_password() -> None:
    handler_output: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_output.append(self.format(record))

    handler = ListHandler()
    handler.addFilter(MaskUrlPasswords())
    logger = logging.getLogger("tests.masking")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("cannot reach %s", "postgresql://bot:hunter2@db/x")
        try:
            raise RuntimeError("connect to 'http://u:chromapass@chroma:8000' failed")
        except RuntimeError:
            logger.exception("index unavailable")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    joined = "\n".join(handler_output)
    assert "postgresql://bot:***@db/x" in joined and "http://u:***@chroma:8000" in joined
    assert "hunter2" not in joined and "chromapass" not in joined
    assert "Traceback" in joined  # the traceback is kept, only the password goes

