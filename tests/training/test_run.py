"""The whole loop: a run promotes a better adapter, keeps the served one otherwise, never half-way."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.atomic import atomic_write_json
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.registry import ArtifactRegistry, adapter_registry
from bot.training_record import last_training_run
from tests.training.conftest import add_labeled_turn
from training import run as run_module
from training.evaluate import EvalResult
from training.finetune import FinetuneResult
from training.run import TrainingOutcome, run_training


def test_weekly_loop_promotes_a_better_adapter_then_keeps_it_against_an_equal_one(
    tiny_settings: Callable[..., Settings], store: ConversationStore, tiny_llm_dir: Path
) -> None:
    from peft import PeftModel

    from bot.model_assets import load_causal_lm

    settings = tiny_settings(training__eval_max_questions=1)
    add_labeled_turn(store, "Do Dracula orchids need a basket?", "Yes, their flowers grow downward.")
    messages: list[str] = []

    first = run_training(settings, store=store, notify=messages.append)
    assert first.status == "promoted", first.summary
    registry = adapter_registry(settings)
    served = registry.current()
    assert served is not None and served.version == first.version == "v0001"
    meta = served.metadata
    assert meta["data_hash"] and meta["config"]["lora_r"] == 4 and meta["gate"]["promote"] is True
    assert meta["metrics"]["candidate"]["perplexity"] < meta["metrics"]["base"]["perplexity"]
    assert meta["gguf"]["status"] == "not_applicable"  # the tiny model is a HF folder, not a GGUF
    assert "blocked" not in meta
    base, _tok = load_causal_lm(tiny_llm_dir)
    PeftModel.from_pretrained(base, str(served.path))  # exactly what serving does on hot-reload

    last = last_training_run(settings)
    assert last is not None and last.finished_at and last.metrics and last.status == "promoted"
    assert last.promoted is True and last.version == "v0001"
    report = Path(last.report_path)
    assert "Promoted v0001" in report.read_text()
    for png in ("loss_curve.png", "before_after.png"):
        assert (report.parent / png).read_bytes().startswith(b"\x89PNG")
    assert messages == [first.summary] and "promoted adapter v0001" in first.summary

    # Same data again: the candidate equals the served adapter, which is not "better by a margin".
    second = run_training(settings, store=store, force=True)
    assert second.status == "rejected"
    assert registry.current_version() == "v0001"
    assert "kept v0001" in second.summary and "needs <=" in second.summary
    assert registry.get("v0002").metadata["gate"]["promote"] is False


def fake_adapter(tmp_path: Path) -> FinetuneResult:
    adapter = tmp_path / "fake-adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text("{}")
    return FinetuneResult(adapter, steps=3, losses=[(1, 2.0), (2, 1.5), (3, 1.2)], tokens=300, wall_s=1.0,
                          device="cpu")


def clearly_better(_settings: Any, _base: Any, _examples: Any, adapters: dict[str, Any]) -> dict[str, EvalResult]:
    ppl = {"base": 12.0, "candidate": 6.0}
    return {name: EvalResult(name, 1.0, ppl.get(name, 10.0), 0.3 if name == "candidate" else 0.2, 0.2, 0.0,
                             2, 0, 0.1) for name in adapters}


@pytest.fixture
def fast_pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Replace the heavy steps (training, model evaluation) so orchestration tests run instantly."""
    monkeypatch.setattr("training.finetune.finetune", lambda *a, **k: fake_adapter(tmp_path))
    monkeypatch.setattr("training.evaluate.evaluate_adapters", clearly_better)
    monkeypatch.setattr("bot.model_assets.base_llm_dir", lambda settings: tmp_path)


def serve_a_known_version(settings: Settings, tmp_path: Path) -> str:
    src = tmp_path / "known"
    src.mkdir()
    (src / "adapter_config.json").write_text('{"known": true}')
    registry = adapter_registry(settings)
    version = registry.add(src, {"note": "served before the run"}).version
    registry.promote(version)
    return version


@pytest.mark.usefixtures("fast_pipeline")
def test_a_run_that_crashes_before_or_during_promotion_keeps_serving_the_old_adapter(
    tiny_settings: Callable[..., Settings], store: ConversationStore, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = tiny_settings()
    served = serve_a_known_version(settings, tmp_path)

    def crash(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("killed during evaluation")

    with monkeypatch.context() as m:
        m.setattr("training.evaluate.evaluate_adapters", crash)
        with pytest.raises(RuntimeError):
            run_training(settings, store=store, force=True)
    assert adapter_registry(settings).current_version() == served
    assert (last := last_training_run(settings)) is not None and last.status == "failed"

    real_replace = __import__("os").replace

    def crash_on_pointer(src: Any, dst: Any) -> None:
        if str(dst).endswith("current.json"):
            raise OSError("power cut while switching the served version")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr("bot.atomic.os.replace", crash_on_pointer)
        with pytest.raises(OSError):
            run_training(settings, store=store, force=True)
    registry = ArtifactRegistry(settings.state_dir / "adapters")
    assert registry.current_version() == served
    assert json.loads((registry.root / "current.json").read_text())["current"] == served
    assert not list(registry.root.glob(".current.json.*"))  # no temp file left behind

    # With the crash gone, the same run promotes the better candidate.
    outcome = run_training(settings, store=store, force=True)
    assert outcome.status == "promoted" and registry.current_version() == outcome.version != served


@pytest.mark.usefixtures("fast_pipeline")
def test_a_failed_gguf_check_registers_the_adapter_but_never_serves_it(
    tiny_settings: Callable[..., Settings], store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.llm import gguf_check

    failed = gguf_check.GGUFCheck(
        "failed", "llama.cpp + GGUF copy chose HF + peft's next token at 40/72 positions", agreement=0.556,
        threshold=0.9, positions=72,
    )
    monkeypatch.setattr(gguf_check, "write_and_check_gguf", lambda settings, adapter_dir, base_dir: failed)
    settings = tiny_settings(training__eval_max_questions=1)
    add_labeled_turn(store, "Do Dracula orchids need a basket?", "Yes, their flowers grow downward.")
    outcome = run_training(settings, store=store)
    assert outcome.status == "rejected" and "GGUF copy failed" in outcome.summary
    registry = adapter_registry(settings)
    assert registry.current_version() is None  # the base model keeps serving
    meta = registry.get(outcome.version).metadata  # type: ignore[arg-type]
    assert meta["gguf"]["agreement"] == 0.556 and "40/72" in meta["blocked"]
    with pytest.raises(Exception, match="cannot be promoted"):
        registry.promote(outcome.version)  # type: ignore[arg-type]


@pytest.mark.usefixtures("fast_pipeline")
def test_a_scheduled_run_skips_until_enough_new_staff_labels_arrived(
    tiny_settings: Callable[..., Settings], store: ConversationStore
) -> None:
    settings = tiny_settings(training__min_new_labels=3)
    first = run_training(settings, store=store)  # the first run ever always trains on the seed data
    assert first.status == "promoted"
    add_labeled_turn(store, "Is Drosera capensis easy?", "Yes.")
    add_labeled_turn(store, "Do Lithops need much water?", "Very little.")
    skipped = run_training(settings, store=store)
    assert skipped.status == "skipped" and "2 new staff label(s)" in skipped.summary
    assert (last := last_training_run(settings)) is not None and last.version == first.version  # a skip does not overwrite the last run
    add_labeled_turn(store, "Why is my Echeveria stretching?", "Too little light.")
    third = run_training(settings, store=store)
    assert third.status == "promoted", third.summary
    assert run_training(settings, store=store).status == "skipped"  # counted from the new run


def test_the_lock_refuses_a_second_run_while_one_is_in_progress(
    tiny_settings: Callable[..., Settings], store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tiny_settings()
    entered, release = threading.Event(), threading.Event()

    def slow_training(*_a: Any, **_k: Any) -> TrainingOutcome:
        entered.set()
        assert release.wait(30)
        return TrainingOutcome("rejected", "done")

    monkeypatch.setattr(run_module, "_train_evaluate_promote", slow_training)
    results: list[TrainingOutcome] = []
    worker = threading.Thread(target=lambda: results.append(run_training(settings, store=store, force=True)))
    worker.start()
    try:
        assert entered.wait(30)
        told: list[str] = []
        second = run_training(settings, store=store, force=True, notify=told.append)
        assert second.status == "busy" and told == [second.summary]
    finally:
        release.set()
        worker.join(30)
    assert [r.status for r in results] == ["rejected"]
    assert run_training(settings, store=store, force=True).status == "rejected"  # lock was released


def test_schedule_waits_for_the_cron_time_then_checks(
    tiny_settings: Callable[..., Settings], store: ConversationStore
) -> None:
    from training.scheduler import next_fire_time, run_schedule

    settings = tiny_settings(training__schedule_cron="0 3 * * 1", training__min_new_labels=5)
    atomic_write_json(settings.state_dir / "training" / "last_run.json",
                      {"labels_until": (datetime.now(UTC) - timedelta(days=1)).isoformat()})
    clock = [datetime(2026, 11, 25, 12, 0, tzinfo=UTC)]  # a Wednesday
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    outcomes = run_schedule(settings, store=store, max_checks=1, now=lambda: clock[0], sleep=sleep)
    assert clock[0] == next_fire_time("0 3 * * 1", datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    assert clock[0].weekday() == 0 and clock[0].hour == 3
    assert max(slept) <= 60 and len(slept) > 1
    assert [o.status for o in outcomes] == ["skipped"]


def test_results_are_posted_to_the_staff_channel_when_slack_is_configured(
    tiny_settings: Callable[..., Settings],
) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qs

    from training.scheduler import slack_notifier

    received: list[tuple[str, dict[str, Any]]] = []

    class FakeSlack(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            data = json.loads(body) if body.startswith("{") else {k: v[0] for k, v in parse_qs(body).items()}
            received.append((self.path, data))
            payload = json.dumps({"ok": True, "channel": data.get("channel"), "ts": "1.2"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeSlack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert slack_notifier(tiny_settings()) is None  # no token, no channel: nothing to post to
        settings = tiny_settings(env={"SLACK_BOT_TOKEN": "xoxb-test"},
                                 slack__api_base_url=f"http://127.0.0.1:{server.server_port}/api/",
                                 slack__staff_channel="CSTAFF")
        notify = slack_notifier(settings)
        assert notify is not None
        notify("Training promoted adapter v0002")
    finally:
        server.shutdown()
    assert [(path, data["channel"]) for path, data in received] == [("/api/chat.postMessage", "CSTAFF")]
    assert "promoted adapter v0002" in received[0][1]["text"]


@pytest.mark.usefixtures("fast_pipeline")
def test_the_router_is_retrained_from_staff_labels_after_the_adapter_step(
    tiny_settings: Callable[..., Settings], store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    calls: list[dict[str, Any]] = []

    def fake_train_router(settings: Settings, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return SimpleNamespace(version="v0007", promoted=True, cv_macro_f1=0.93)

    monkeypatch.setattr("training.router_training.train_router", fake_train_router)
    monkeypatch.setattr("bot.model_assets.load_embedder", lambda settings: "embedder")
    # The stand-in embedder cannot ground examples; grounding has its own tests.
    outcome = run_training(tiny_settings(training__retrain_router=True, training__grounded=False), store=store,
                           force=True)
    assert outcome.status == "promoted"
    assert calls == [{"embedder": "embedder", "store": store, "promote": True}]
    assert "Router retrained (v0007, cross-validated macro-F1 0.93)" in outcome.summary
