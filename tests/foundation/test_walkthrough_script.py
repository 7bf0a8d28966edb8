"""scripts/walkthrough.py: it never touches the project's own state, and its staff label is real.

The script trains and promotes an adapter, so pointed at the configured state directory it
would change what a real bot serves: it must refuse before loading anything. Its staff label
goes through the Slack flag modal's own builder and parser, so a renamed modal field breaks
this test instead of silently storing an empty correction that training then skips.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.interfaces import Answer, AskContext

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def walkthrough() -> ModuleType:
    spec = importlib.util.spec_from_file_location("walkthrough_script", REPO / "scripts" / "walkthrough.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_refuses_the_configured_state_dir_and_folders_in_use(walkthrough: ModuleType, tmp_path: Path) -> None:
    configured = tmp_path / "var"
    for bad in (configured, configured / "walkthrough", tmp_path, REPO / "tmp-walkthrough"):
        with pytest.raises(walkthrough.WalkthroughError):
            walkthrough.check_state_dir(bad, configured)
    used = tmp_path / "used"
    used.mkdir()
    (used / "supportbot.db").write_text("", encoding="utf-8")
    with pytest.raises(walkthrough.WalkthroughError, match="not an empty folder"):
        walkthrough.check_state_dir(used, configured)
    fresh = tmp_path / "elsewhere" / "wt"
    assert walkthrough.check_state_dir(fresh, configured) == fresh.resolve()


def test_main_refuses_the_projects_var_without_creating_anything(walkthrough: ModuleType) -> None:
    target = REPO / "var" / "walkthrough-test"
    assert walkthrough.main(["--state-dir", str(target)]) == 2
    assert not target.exists()


def test_negative_training_overrides_are_rejected(walkthrough: ModuleType) -> None:
    with pytest.raises(SystemExit):
        walkthrough.parse_args(["--state-dir", "/tmp/x", "--epochs", "-1"])
    args = walkthrough.parse_args(["--state-dir", "/tmp/x"])
    assert args.question == walkthrough.DEFAULT_QUESTION
    assert args.eval_max_questions == walkthrough.DEFAULT_EVAL_QUESTIONS


def test_staff_label_goes_through_the_modal_and_becomes_training_data(
    walkthrough: ModuleType, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    from training.dataset import SOURCE_CORRECTED, labeled_examples

    settings = settings_factory()
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        turn_id = store.log_turn(
            "How do I care for a Mexican butterwort?",
            Answer(text="They make great pets.", route="domain", confidence=0.76, reason="test"),
            AskContext(channel="cli", user="customer"),
        )
        correction = "Bright light, rainwater, and a dry rest in winter."
        label_id, submission = walkthrough.record_staff_label(store, turn_id, correction, "a note")
        assert label_id > 0
        assert (submission.verdict, submission.correct_route, submission.note) == ("incorrect", "domain", "a note")
        examples, _ = labeled_examples(settings, store, Counter())
    finally:
        store.close()
    assert [(ex.question, ex.answer, ex.source) for ex in examples] == [
        ("How do I care for a Mexican butterwort?", correction, SOURCE_CORRECTED)
    ]
