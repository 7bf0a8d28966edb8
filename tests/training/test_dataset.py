"""Export: only staff-approved text, personal data redacted, one example per question, a stable split."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings
from bot.conversation_log import ConversationStore
from tests.training.conftest import SEED, add_labeled_turn, write_seed
from training.dataset import (
    DatasetError,
    Redactor,
    export_dataset,
    read_jsonl_examples,
    read_seed_dataset,
    split_bucket,
)

REPO = Path(__file__).resolve().parents[2]


def all_text(out: Path) -> str:
    return (out / "train.jsonl").read_text() + (out / "eval.jsonl").read_text()


def test_personal_data_is_redacted_before_anything_is_written(
    tiny_settings: Callable[..., Settings], store: ConversationStore, tmp_path: Path
) -> None:
    settings = tiny_settings(training__redact_patterns=[r"RR-\d{6}"])
    add_labeled_turn(
        store,
        "My Nepenthes from order RR-123456 has no pitchers, mail me at jane.doe@example.com",
        "Sorry to hear that.",
        verdict="incorrect",
        corrected="Give it more light and humidity. Call us on +1 (555) 123-4567 if it does not improve; "
        "we never need your card 4111 1111 1111 1111.",
    )
    result = export_dataset(settings, store, tmp_path / "out")
    text = all_text(tmp_path / "out")
    for secret in ("jane.doe@example.com", "555", "4111", "RR-123456"):
        assert secret not in text
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[REDACTED]"):
        assert placeholder in text
    assert result.report["redactions"] == {"email": 1, "phone": 1, "card": 1, "redacted": 1}


def test_redaction_keeps_care_numbers_and_non_card_digit_runs() -> None:
    redact = Redactor()
    care = "Water every 7-10 days at 18-24 C and 60-80 % humidity; repot in 2024-2025."
    assert redact(care) == care
    redact("order 4111 1111 1111 1112")  # fails the Luhn check: not a card number
    assert redact.counts["card"] == 0
    assert redact("card 4111-1111-1111-1111 ok") == "card [CARD] ok"


def test_only_staff_approved_domain_answers_are_exported(
    tiny_settings: Callable[..., Settings], store: ConversationStore, tmp_path: Path
) -> None:
    add_labeled_turn(store, "Do Dracula orchids need a basket?", "Yes, flowers grow downward.")
    add_labeled_turn(store, "Is Drosera capensis easy?", "Bad answer.", verdict="incorrect",
                     corrected="Yes, it grows all year on a sunny windowsill.")
    add_labeled_turn(store, "Why do my Sarracenia flop?", "Bad answer.", verdict="incorrect")  # no fix
    add_labeled_turn(store, "My plant arrived dead, refund!", "Escalated.", route="escalate")
    add_labeled_turn(store, "How long is shipping to Canada?", "Five days.", route="retrieval")
    add_labeled_turn(store, "How do I divide a Sarracenia?", "Shipping takes 5 days.", route="retrieval",
                     verdict="incorrect", corrected="Cut the rhizome in late winter.", correct_route="domain")

    result = export_dataset(tiny_settings(), store, tmp_path / "out")
    answers = {ex.question: (ex.answer, ex.source) for ex in [*result.train, *result.eval]}
    assert answers["Do Dracula orchids need a basket?"] == ("Yes, flowers grow downward.", "staff_correct")
    assert answers["Is Drosera capensis easy?"][0] == "Yes, it grows all year on a sunny windowsill."
    assert answers["How do I divide a Sarracenia?"][0] == "Cut the rhizome in late winter."
    for excluded in ("Why do my Sarracenia flop?", "My plant arrived dead, refund!", "How long is shipping to Canada?"):
        assert excluded not in answers
    assert result.report["skipped"] == {"incorrect_without_correction": 1, "route_escalate": 1,
                                        "route_retrieval": 1}
    assert result.report["label_mix"] == {"correct": 3, "incorrect": 3}
    assert len(answers) == len(SEED) + 3

    with_retrieval = export_dataset(tiny_settings(training__include_retrieval_turns=True), store, tmp_path / "o2")
    assert "How long is shipping to Canada?" in {ex.question for ex in [*with_retrieval.train, *with_retrieval.eval]}


def test_staff_correction_replaces_the_seed_answer_for_the_same_question(
    tiny_settings: Callable[..., Settings], store: ConversationStore, tmp_path: Path
) -> None:
    question, _ = SEED[0]
    add_labeled_turn(store, question.upper() + "  ", "x", verdict="incorrect", corrected="Every three days.")
    result = export_dataset(tiny_settings(), store, tmp_path / "out")
    matching = [ex for ex in [*result.train, *result.eval] if ex.question.casefold() == question.casefold()]
    assert [ex.answer for ex in matching] == ["Every three days."]
    assert result.report["duplicates_dropped"] == 1


def test_split_is_deterministic_and_questions_never_change_sides_as_data_grows(
    tiny_settings: Callable[..., Settings], store: ConversationStore, tmp_path: Path
) -> None:
    settings = tiny_settings()
    first = export_dataset(settings, store, tmp_path / "a")
    again = export_dataset(settings, store, tmp_path / "b")
    assert first.data_hash == again.data_hash
    assert (tmp_path / "a" / "eval.jsonl").read_bytes() == (tmp_path / "b" / "eval.jsonl").read_bytes()
    assert first.eval and first.train
    assert not {e.question for e in first.eval} & {e.question for e in first.train}

    for i in range(30):
        add_labeled_turn(store, f"Question number {i} about Haworthia offsets?", f"Answer {i}.")
    grown = export_dataset(settings, store, tmp_path / "c")
    always_held = {e.question for e in first.eval if split_bucket(e.question) < settings.training.eval_fraction}
    assert always_held and always_held <= {e.question for e in grown.eval}
    assert len(grown.eval) >= round(0.25 * (len(SEED) + 30))
    assert grown.data_hash != first.data_hash
    assert read_jsonl_examples(grown.eval_path) == grown.eval
    report_md = (tmp_path / "c" / "report.md").read_text()
    assert f"train {len(grown.train)}, eval {len(grown.eval)}" in report_md


def test_a_broken_seed_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = write_seed(tmp_path / "seed.jsonl")
    with path.open("a") as fh:
        fh.write(json.dumps({"messages": [{"role": "user", "content": "only a question"}]}) + "\n")
    with pytest.raises(DatasetError, match=r"seed\.jsonl:9: .*assistant"):
        read_seed_dataset(path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_seed_dataset(tmp_path / "missing.jsonl")


def test_shipped_seed_dataset_teaches_the_demo_shop(settings_factory: Callable[..., Settings], tmp_path: Path) -> None:
    examples = read_seed_dataset(REPO / "data" / "seed_domain.jsonl")
    assert 60 <= len(examples) <= 100
    text = " ".join(ex.question + ex.answer for ex in examples)
    for plant in ("Masdevallia", "Phalaenopsis", "Dracula", "Nepenthes", "Venus flytrap", "Drosera",
                  "Sarracenia", "Lithops", "Haworthia", "Echeveria"):
        assert plant in text
    settings = settings_factory(training__seed_dataset=str(REPO / "data" / "seed_domain.jsonl"))
    result = export_dataset(settings, None, tmp_path / "out")
    assert len(result.eval) >= 8 and len(result.train) >= 50
