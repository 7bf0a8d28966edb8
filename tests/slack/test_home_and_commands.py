"""App Home for staff and customers, and the `/supportbot` command."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.atomic import atomic_write_json
from bot.config import Settings
from bot.registry import ArtifactRegistry
from bot.slack import ids
from bot.slack.middleware import STAFF_ONLY_TEXT
from tests.slack.conftest import CUSTOMER, STAFF, STAFF_CHANNEL, HarnessFactory, button, mention


def _home_opened(user: str) -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": "DHOME", "tab": "home", "event_ts": "1.1"}


def test_staff_home_shows_todays_answers_votes_versions_training_and_pending_flags(
    slack_harness: HarnessFactory, tmp_path: Path
) -> None:
    h = slack_harness()
    registry = ArtifactRegistry(h.settings.state_dir / "adapters")
    artifact = tmp_path / "adapter"
    artifact.mkdir()
    registry.promote(registry.add(artifact, {}).version)
    atomic_write_json(h.settings.state_dir / "training" / "last_run.json", {
        "finished_at": "2024-06-01T10:00:00Z", "promoted": True, "version": "v0001",
        "summary": "token F1 0.31 to 0.38; 0 degenerate answers", "report_path": "r.md", "metrics": {}})
    h.send.event(mention("How long does shipping to Canada take?", ts="1710000000.000100"))
    [final] = h.answered()
    turn = h.store.recent_turns(1)[0]
    h.send.interactive(button(ids.FEEDBACK_DOWN, str(turn.id), user=CUSTOMER, channel="CGENERAL",
                              message_ts=final.args["ts"]))
    h.fake.wait_for(lambda f: f.calls_to("chat.postEphemeral"))

    h.send.event(_home_opened(STAFF))
    [published] = h.fake.wait_for(lambda f: f.calls_to("views.publish"))
    text = json.dumps(published.args["view"], ensure_ascii=False)
    assert published.args["user_id"] == STAFF
    assert "*Answers today:* 1 (retrieval 1)" in text
    assert "👎 1" in text and "0% helpful" in text
    assert "model adapter v0001" in text and "router seed (untrained)" in text
    assert "promoted *v0001*" in text and "token F1 0.31 to 0.38" in text
    assert "How long does shipping to Canada take?" in text and ids.REVIEW_FROM_HOME in text


def test_customer_home_shows_a_short_help(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    h.send.event(_home_opened(CUSTOMER))
    [published] = h.fake.wait_for(lambda f: f.calls_to("views.publish"))
    text = json.dumps(published.args["view"], ensure_ascii=False)
    assert "Rare Roots support" in text and "mention me" in text
    assert "Answers today" not in text


def test_status_command_answers_staff_and_refuses_customers(slack_harness: HarnessFactory) -> None:
    h = slack_harness()
    assert "*Answers today:* none yet" in h.send.command("status", STAFF).text
    assert h.send.command("status", CUSTOMER).text == STAFF_ONLY_TEXT
    assert "reindex" in h.send.command("", STAFF).text  # help


@dataclass
class Outcome:
    """Shaped like training.run.TrainingOutcome."""

    status: str
    summary: str
    version: str | None = None

    @property
    def promoted(self) -> bool:
        return self.status == "promoted"


def test_train_command_runs_in_the_background_and_posts_the_result(slack_harness: HarnessFactory) -> None:
    calls: list[dict[str, Any]] = []

    def fake_training(settings: Settings, notify: Any, **options: Any) -> Outcome:
        calls.append(options)
        notify("Exported 12 labeled turns; fine-tuning…")
        notify("promoted v0002: token F1 0.31 to 0.38")  # the real job also tells its summary
        return Outcome("promoted", "promoted v0002: token F1 0.31 to 0.38", "v0002")

    h = slack_harness(trainer=fake_training)
    reply = h.send.command("train force", STAFF).text
    assert "Training started in the background" in reply
    h.services.jobs.wait(30)
    posts = [c.args["text"] for c in h.fake.calls_to("chat.postMessage") if c.args["channel"] == STAFF_CHANNEL]
    assert posts == [
        "Exported 12 labeled turns; fine-tuning…",
        "promoted v0002: token F1 0.31 to 0.38",
        "Training run finished: *promoted*, now serving v0002",
    ]
    assert calls == [{"force": True}]


def test_train_result_falls_back_to_the_last_run_file(slack_harness: HarnessFactory) -> None:
    def fake_training(settings: Settings, notify: Any) -> None:
        atomic_write_json(settings.state_dir / "training" / "last_run.json", {
            "finished_at": "2024-06-02T09:00:00Z", "promoted": False, "version": "v0002",
            "summary": "eval gate: F1 did not improve", "metrics": {}})

    h = slack_harness(trainer=fake_training, slack__staff_channel="")
    h.send.command("train", STAFF)
    h.services.jobs.wait(30)
    [post] = h.fake.calls_to("chat.postMessage")
    assert post.args["channel"] == STAFF  # no staff channel: a DM to whoever asked
    assert "kept the serving model" in post.args["text"] and "F1 did not improve" in post.args["text"]


def test_reindex_command_syncs_the_knowledge_base_and_reports(slack_harness: HarnessFactory) -> None:
    class Report:
        def summary(self) -> str:
            return "3 files changed, 41 chunks"

    class Knowledge:
        syncs = 0

        def sync(self) -> Report:
            Knowledge.syncs += 1
            return Report()

    h = slack_harness(knowledge=Knowledge())
    assert "Re-indexing" in h.send.command("reindex", STAFF).text
    h.services.jobs.wait(30)
    assert Knowledge.syncs == 1
    [report] = [c for c in h.fake.calls_to("chat.postMessage") if c.args["channel"] == STAFF_CHANNEL]
    assert report.args["text"] == "Knowledge base re-indexed: 3 files changed, 41 chunks"
