"""The pure parts: Block Kit builders, retry timing, staff lookups, rate limits, status, modes."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.http_retry.response import HttpResponse

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.errors import ConfigError
from bot.interfaces import Answer, AskContext, Source
from bot.slack import ids
from bot.slack.answer_service import StreamingPreview
from bot.slack.blocks import (
    SECTION_LIMIT,
    answer_blocks,
    escape_mrkdwn,
    flag_modal,
    parse_flag_submission,
    split_for_sections,
)
from bot.slack.client import SlackBackoffRetryHandler
from bot.slack.jobs import BackgroundJobs
from bot.slack.middleware import QuestionRateLimiter, StaffDirectory
from bot.slack.server import resolve_mode, serve_slack
from bot.training_record import read_last_training_run


def test_answer_text_cannot_inject_mentions_or_links() -> None:
    answer = Answer(text="Use <!channel> & <https://evil.example|click>", route="domain", confidence=0.5,
                    reason="", turn_id=3)
    section = answer_blocks(answer)[0]["text"]["text"]
    assert section == "Use &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
    assert escape_mrkdwn("a<b>c&d") == "a&lt;b&gt;c&amp;d"


def test_long_answers_are_split_into_sections_within_slacks_limit() -> None:
    text = ("Orchids like humid air. " * 400).strip()
    parts = split_for_sections(text)
    assert len(parts) > 1 and all(len(p) <= SECTION_LIMIT for p in parts)
    assert " ".join(parts) == text
    blocks = answer_blocks(Answer(text=text, route="domain", confidence=0.6, reason="", turn_id=1))
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")


def test_sources_are_deduplicated_capped_and_linked_when_they_have_a_url() -> None:
    same = Source(title="Returns", heading="Arrival guarantee", path="knowledge/returns.md", url="https://x/r")
    others = [Source(title=f"Doc {i}", path=f"knowledge/{i}.md") for i in range(8)]
    blocks = answer_blocks(Answer(text="t", route="retrieval", confidence=0.9, reason="", turn_id=1,
                                  sources=[same, same, *others]))
    sources = blocks[2]["elements"][0]["text"]
    assert sources.count("<https://x/r|Returns › Arrival guarantee>") == 1
    assert sources.count("•") == 5


def test_escalations_and_unlogged_answers_get_no_vote_buttons() -> None:
    for answer in (Answer(text="t", route="escalate", confidence=1, reason="", turn_id=4),
                   Answer(text="t", route="domain", confidence=1, reason="", turn_id=None)):
        assert all(b["type"] != "actions" for b in answer_blocks(answer))


def _view(verdict: str | None, route: str | None = None, corrected: str = "", meta: str = '{"turn_id": 9}') -> dict:
    pick = lambda v: {"selected_option": {"value": v} if v else None}  # noqa: E731
    return {"private_metadata": meta, "state": {"values": {
        ids.FLAG_VERDICT_BLOCK: {ids.FLAG_VERDICT_ACTION: pick(verdict)},
        ids.FLAG_ROUTE_BLOCK: {ids.FLAG_ROUTE_ACTION: pick(route)},
        ids.FLAG_CORRECTED_BLOCK: {ids.FLAG_CORRECTED_ACTION: {"value": f"  {corrected}  "}},
    }}}


def test_flag_submission_is_parsed_and_validated() -> None:
    ok, errors = parse_flag_submission(_view("incorrect", "escalate", "Ask a person"))
    assert errors == {} and ok is not None
    assert (ok.turn_id, ok.verdict, ok.correct_route, ok.corrected_answer) == (9, "incorrect", "escalate", "Ask a person")
    assert parse_flag_submission(_view(None))[1] == {ids.FLAG_VERDICT_BLOCK: "Choose correct, incorrect or withdraw."}
    assert ids.FLAG_ROUTE_BLOCK in parse_flag_submission(_view("correct", "chitchat"))[1]
    assert "lost track" in parse_flag_submission(_view("correct", meta="{}"))[1][ids.FLAG_VERDICT_BLOCK]


def test_flag_modal_preselects_the_route_that_answered_and_carries_the_turn() -> None:
    view = flag_modal(turn_id=5, question="q", answer="a", route="domain", channel="C1", message_ts="1.2")
    route_block = next(b for b in view["blocks"] if b.get("block_id") == ids.FLAG_ROUTE_BLOCK)
    assert route_block["element"]["initial_option"]["value"] == "domain"
    assert json.loads(view["private_metadata"]) == {"turn_id": 5, "channel": "C1", "message_ts": "1.2"}


def test_retry_handler_waits_retry_after_on_429_and_backs_off_exponentially_otherwise() -> None:
    handler = SlackBackoffRetryHandler(max_retry_count=4, base_delay_s=1.0, max_delay_s=5.0)
    limited = HttpResponse(status_code=429, headers={"Retry-After": "7"})
    assert handler.delay_for(0, limited) == 7
    assert handler.delay_for(0, HttpResponse(status_code=429, headers={"retry-after": "999"})) == 60
    assert 0.5 <= handler.delay_for(0, None) <= 1.0
    assert 2.0 <= handler.delay_for(2, None) <= 4.0
    assert handler.delay_for(9, None) <= 5.0


def test_retry_handler_retries_only_what_is_safe_to_repeat() -> None:
    from urllib.error import URLError

    from slack_sdk.http_retry.request import HttpRequest
    from slack_sdk.http_retry.state import RetryState

    handler = SlackBackoffRetryHandler(max_retry_count=2)
    request = HttpRequest(method="POST", url="https://slack.test/api/chat.postMessage", headers={})
    state = RetryState()

    def can(response: HttpResponse | None = None, error: Exception | None = None) -> bool:
        return handler.can_retry(state=state, request=request, response=response, error=error)

    assert can(HttpResponse(status_code=503, headers={}))
    assert can(HttpResponse(status_code=200, headers={}, body={"ok": False, "error": "internal_error"}))
    assert not can(HttpResponse(status_code=200, headers={}, body={"ok": False, "error": "channel_not_found"}))
    assert can(error=URLError(ConnectionRefusedError()))
    assert not can(error=TimeoutError())  # the message may have been posted: never twice
    state.current_attempt = 2
    assert not can(HttpResponse(status_code=503, headers={}))


class _GroupClient:
    def __init__(self, members: list[str], fail: bool = False) -> None:
        self.members, self.fail, self.calls = members, fail, 0

    def usergroups_users_list(self, usergroup: str) -> dict[str, Any]:
        from slack_sdk.errors import SlackApiError

        self.calls += 1
        if self.fail:
            raise SlackApiError("boom", {"ok": False, "error": "ratelimited"})
        return {"ok": True, "users": self.members}


def test_staff_group_members_are_cached_and_survive_a_slack_hiccup() -> None:
    now = [0.0]
    client = _GroupClient(["UG1"])
    staff = StaffDirectory(client, ["U1"], "S1", cache_s=60, clock=lambda: now[0])  # type: ignore[arg-type]
    assert staff.is_staff("U1") and staff.is_staff("UG1") and not staff.is_staff("UX")
    assert client.calls == 1
    now[0] = 61
    client.fail = True
    assert staff.is_staff("UG1")  # last known members kept
    assert not StaffDirectory(client, [], "", cache_s=60).is_staff("UG1")  # type: ignore[arg-type]


def test_rate_limit_counts_logged_and_accepted_questions_once(tmp_path: Path) -> None:
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    now = [datetime.now(UTC)]
    limiter = QuestionRateLimiter(store, per_minute=2, clock=lambda: now[0])
    ctx = AskContext(channel="slack", user="U1")
    store.log_turn("asked on another replica", Answer(text="a", route="domain", confidence=1, reason=""), ctx)
    assert limiter.try_acquire("U1")  # 1 logged elsewhere, 1 accepted here
    store.log_turn("the accepted one, now logged", Answer(text="a", route="domain", confidence=1, reason=""), ctx)
    assert not limiter.try_acquire("U1")  # 2 logged: the limit
    assert limiter.try_acquire("U2")
    assert limiter.try_acquire("U2")  # accepted but not yet logged still count
    assert not limiter.try_acquire("U2")
    now[0] += timedelta(minutes=2)  # everything left the window
    assert limiter.try_acquire("U1") and limiter.try_acquire("U1")
    store.close()


class _InlineExecutor:
    def submit(self, fn: Any, *args: Any) -> Future[None]:
        future: Future[None] = Future()
        fn(*args)
        future.set_result(None)
        return future


class _UpdateClient:
    def __init__(self) -> None:
        self.updates: list[str] = []

    def chat_update(self, **kwargs: Any) -> None:
        self.updates.append(kwargs["text"])


def test_streaming_preview_shows_the_text_so_far_at_most_once_per_interval() -> None:
    now = [0.0]
    client = _UpdateClient()
    preview = StreamingPreview(client, "C1", "1.1", 1.0, _InlineExecutor(), clock=lambda: now[0])  # type: ignore[arg-type]
    preview.push("Water")
    assert client.updates == []  # nothing within the first interval
    now[0] = 1.5
    preview.push("Water weekly")
    now[0] = 1.6
    preview.push("Water weekly in summer.")  # throttled
    assert client.updates == ["Water weekly"]
    preview.finish()
    now[0] = 5
    preview.push("Water weekly in summer. More")  # after finish, never lands over the final answer
    assert client.updates == ["Water weekly"]


def test_background_job_runs_once_at_a_time_and_reports_failures() -> None:
    jobs = BackgroundJobs()
    release = threading.Event()
    reports: list[str] = []
    assert jobs.start("train", "U1", lambda: (release.wait(10), "done")[1], reports.append)
    assert not jobs.start("train", "U2", lambda: "second", reports.append)
    assert jobs.running("train").started_by == "U1"  # type: ignore[union-attr]
    release.set()
    jobs.wait(10)
    assert jobs.start("train", "U2", lambda: 1 / 0, reports.append)  # type: ignore[arg-type,return-value]
    jobs.wait(10)
    assert reports[0] == "done"
    assert "failed (ZeroDivisionError" in reports[1] and "keeps serving" in reports[1]


def test_damaged_last_run_file_reads_as_no_run(tmp_path: Path) -> None:
    path = tmp_path / "last_run.json"
    assert read_last_training_run(path) is None
    path.write_text("{not json", encoding="utf-8")
    assert read_last_training_run(path) is None
    path.write_text('{"finished_at": "2024-06-01T10:00:00Z", "promoted": true, "version": "v3"}', encoding="utf-8")
    run = read_last_training_run(path)
    assert run is not None and run.promoted and run.version == "v3"


def test_connection_mode_follows_the_tokens(settings_factory: Any) -> None:
    def settings(mode: str = "auto", **env: str) -> Settings:
        return settings_factory(env={"SLACK_BOT_TOKEN": "xoxb-1", **env}, **{"slack.mode": mode})

    assert resolve_mode(settings(SLACK_APP_TOKEN="xapp-1")) == "socket"
    assert resolve_mode(settings(SLACK_SIGNING_SECRET="s")) == "http"
    assert resolve_mode(settings("http", SLACK_APP_TOKEN="xapp-1", SLACK_SIGNING_SECRET="s")) == "http"
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        resolve_mode(settings("socket", SLACK_SIGNING_SECRET="s"))
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        resolve_mode(settings())


def test_serve_without_a_signing_secret_fails_before_loading_models(settings_factory: Any) -> None:
    settings = settings_factory(env={"SLACK_BOT_TOKEN": "xoxb-1"}, **{"slack.mode": "http"})
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        serve_slack(settings)


def test_serve_starts_even_when_the_domain_model_is_not_ready_yet(
    settings_factory: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """In the compose layout the inference server may still be starting when a replica starts."""
    import bot.factory
    import bot.slack.app
    import bot.slack.server as server
    from bot.errors import AnswererUnavailable

    events: list[str] = []

    class NotReady:
        def warm_up(self) -> None:
            raise AnswererUnavailable("inference server at http://inference:8000/v1 refused the connection")

    class Services:
        jobs = type("Jobs", (), {"running": staticmethod(lambda name: False)})()

        def drain(self) -> None:
            events.append("drained")

    def build_runtime(settings: Any, watch: bool, **_: Any) -> bot.factory.Runtime:
        return bot.factory.Runtime(settings, object(), object(), None, None, NotReady(),  # type: ignore[arg-type]
                                   [lambda: events.append("closed")])

    monkeypatch.setattr(bot.factory, "build_runtime", build_runtime)
    monkeypatch.setattr(bot.slack.app, "build_services", lambda *a, **k: Services())
    monkeypatch.setattr(bot.slack.app, "build_app", lambda *a, **k: "app")
    monkeypatch.setattr(server, "_wait_until_slack_answers", lambda client, settings: True)
    monkeypatch.setattr(server.HttpSlackServer, "serve_forever", lambda self: events.append("serving"))
    settings = settings_factory(env={"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"}, **{"slack.mode": "http"})
    with caplog.at_level("WARNING", logger="bot.factory"):
        serve_slack(settings)
    assert events == ["serving", "drained", "closed"]
    assert "domain model not ready at start" in caplog.text and "refused the connection" in caplog.text


def test_event_ids_are_pruned_at_most_hourly_and_off_the_ack_path() -> None:
    from datetime import UTC, datetime

    from bot.slack.answer_service import AnswerService, Question

    class Store:
        def __init__(self) -> None:
            self.cutoffs: list[datetime] = []

        def claim_event(self, event_id: str) -> bool:
            return False  # every question is a duplicate: accept() stops right after claiming

        def prune_events(self, before: datetime) -> int:
            self.cutoffs.append(before)
            return 3

    class Later:
        def __init__(self) -> None:
            self.jobs: list[Any] = []

        def submit(self, fn: Any, *args: Any) -> None:
            self.jobs.append((fn, args))

    store, executor, now = Store(), Later(), [1_000_000.0]
    service = AnswerService(
        pipeline=None, store=store, client=None, limiter=None, notifier=None,  # type: ignore[arg-type]
        answer_executor=executor, preview_executor=executor, stream_interval_s=1.0,  # type: ignore[arg-type]
        rate_limit_per_minute=10, event_retention_s=7 * 86400.0, clock=lambda: now[0],
    )
    question = Question("hi", "U1", "C1", "1.0", "1.0", "Ev1")
    for step in (0.0, 60.0, 3500.0, 3700.0):
        now[0] = 1_000_000.0 + step
        assert service.accept(question) is False
    assert store.cutoffs == []  # nothing ran inside accept(): the ack path stays fast
    for fn, args in executor.jobs:
        fn(*args)
    assert store.cutoffs == [
        datetime.fromtimestamp(1_000_000.0 - 7 * 86400.0, tz=UTC),
        datetime.fromtimestamp(1_003_700.0 - 7 * 86400.0, tz=UTC),
    ]
