"""An eval run counts routing, quality, escalations and degenerate answers the way a reviewer would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.evaluation.metrics import token_f1
from bot.evaluation.report import ReportError, compare_reports, load_report, summarize, write_report
from bot.evaluation.runner import InvalidTestSet, load_testset, run_evaluation, source_matches
from tests.evaluation.conftest import TESTSET, scripted_pipeline, write_testset


def run_report(settings: Settings, store: ConversationStore, testset: Path, *, improved: bool = False) -> dict:
    items, problems = load_testset(testset)
    results = run_evaluation(scripted_pipeline(settings, store, improved=improved), items)
    return summarize(results, problems, testset=str(testset), created="2025-01-01T00:00:00+00:00",
                     command="supportbot eval test", degenerate_threshold=0.25)


def test_eval_counts_routes_escalations_citations_and_degenerate_answers(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    report = run_report(eval_settings, eval_store, write_testset(tmp_path / "t.jsonl", TESTSET))

    assert report["counts"] == {"items": 7, "skipped_lines": 0}
    routing = report["routing"]
    assert routing["accuracy"] == pytest.approx(4 / 7, abs=1e-4)
    assert routing["confusion"] == {
        "domain": {"domain": 1, "retrieval": 1, "escalate": 1},
        "retrieval": {"domain": 0, "retrieval": 2, "escalate": 0},
        "escalate": {"domain": 1, "retrieval": 0, "escalate": 1},
    }
    assert routing["per_route"]["retrieval"] == {"precision": pytest.approx(2 / 3, abs=1e-4), "recall": 1.0,
                                                 "f1": 0.8, "support": 2}
    assert report["escalation"] == {"rate": pytest.approx(2 / 7, abs=1e-4), "escalated": 2, "missed": 1, "unneeded": 1}
    assert report["degenerate"]["count"] == 1
    # shipping.md cited under an absolute path counts; returns.md answered from pricing.md does not.
    assert report["quality"]["retrieval"]["citation_hit_rate"] == 0.5
    domain = report["quality"]["domain"]
    assert domain["with_reference"] == 3
    # exact answer 1.0; misrouted "See our shipping policy." 0.0; the hand-off shares a word or two.
    handoff = EscalationAnswerer(eval_settings.app.company_name).text
    assert domain["token_f1"] == pytest.approx((1.0 + 0.0 + token_f1(handoff, TESTSET[6]["reference"])) / 3, abs=1e-3)
    angry = next(r for r in report["results"] if r["id"] == "angry")
    assert angry["degenerate"] and angry["token_f1"] == 0.0  # a loop scores zero whatever it shares
    assert report["versions"] == {"model": ["adapter-v1", "extractive", "human"], "router": ["router-v1"]}
    assert report["latency_ms"]["domain"]["count"] == 2 and report["latency_ms"]["all"]["p95"] is not None


def test_eval_turns_are_logged_apart_from_customer_channels(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    report = run_report(eval_settings, eval_store, write_testset(tmp_path / "t.jsonl", TESTSET[:2]))

    turn = eval_store.get_turn(report["results"][0]["turn_id"])
    assert turn is not None and turn.channel == "eval" and turn.question == TESTSET[0]["question"]


def test_malformed_lines_are_reported_by_line_number_and_skipped(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    path = write_testset(
        tmp_path / "t.jsonl",
        [TESTSET[0], "# a comment", "", '{"question": "no closing brace"', TESTSET[2]],
        [
            json.dumps({"question": "Where is my order?", "expected_route": "billing"}),
            json.dumps({"question": "  ", "expected_route": "domain"}),
            json.dumps({"question": "Typo?", "expected_route": "domain", "expected_sorce": "a.md"}),
            json.dumps(["not", "an", "object"]),
            json.dumps({**TESTSET[3], "id": "water"}),
        ],
    )

    items, problems = load_testset(path)

    assert [item.id for item in items] == ["water", "ship"]
    assert [(p.line, p.message.split(" ")[0]) for p in problems] == [
        (4, "not"), (6, "'expected_route'"), (7, "'question'"), (8, "unknown"), (9, "expected"), (10, "id"),
    ]
    assert "'expected_route' must be one of ['domain', 'retrieval', 'escalate'], got 'billing'" in problems[1].message
    assert "expected_sorce" in problems[3].message
    assert "already used on line 1" in problems[5].message
    report = run_report(eval_settings, eval_store, path)
    assert report["counts"] == {"items": 2, "skipped_lines": 6}
    assert report["skipped"][0]["line"] == 4


def test_a_test_set_with_no_usable_line_is_an_error(tmp_path: Path) -> None:
    path = write_testset(tmp_path / "t.jsonl", ['{"question": 1}', "nonsense"])
    with pytest.raises(InvalidTestSet, match="no usable test items.*first: line 1"):
        load_testset(path)
    with pytest.raises(InvalidTestSet, match="not found"):
        load_testset(tmp_path / "missing.jsonl")


def test_expected_source_matches_by_trailing_path_parts() -> None:
    assert source_matches("/srv/kb/knowledge/shipping.md", "shipping.md")
    assert source_matches("knowledge/policies/returns.md", "policies/returns.md")
    assert not source_matches("knowledge/policies/returns.md", "other/returns.md")
    assert not source_matches("knowledge/myshipping.md", "shipping.md")


def test_compare_shows_what_the_new_version_fixed(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    testset = write_testset(tmp_path / "t.jsonl", TESTSET)
    old = run_report(eval_settings, eval_store, testset)
    written_old = write_report(old, tmp_path / "old")
    new = run_report(eval_settings, eval_store, testset, improved=True)

    comparison = compare_reports(load_report(written_old["json"]), new, old_label="v1")

    metrics = {m["metric"]: m for m in comparison["metrics"]}
    assert metrics["route accuracy"]["old"] == pytest.approx(4 / 7, abs=1e-4)
    assert metrics["route accuracy"]["new"] == pytest.approx(6 / 7, abs=1e-4)
    assert metrics["route accuracy"]["verdict"] == "better"
    assert metrics["missed escalations"] == {"metric": "missed escalations", "old": 1, "new": 0, "delta": -1,
                                             "verdict": "better"}
    assert metrics["degenerate answers"]["verdict"] == "better"
    changed = {c["question"]: c["changes"] for c in comparison["changed_items"]}
    assert changed[TESTSET[1]["question"]][0] == "route retrieval (wrong) → domain (right)"
    assert "token F1 0.00 → 1.00" in changed[TESTSET[1]["question"]]
    assert "no longer degenerate" in changed[TESTSET[5]["question"]]
    assert TESTSET[0]["question"] not in changed
    assert comparison["old_versions"]["router"] == ["router-v1"]
    assert comparison["new_versions"]["router"] == ["router-v2"]

    written = write_report(new, tmp_path / "new", comparison)
    markdown = written["markdown"].read_text(encoding="utf-8")
    assert "## Changes since v1" in markdown
    assert "| route accuracy | 0.571 | 0.857 | +0.286 | better |" in markdown
    assert written["comparison"].read_bytes().startswith(b"\x89PNG")


def test_report_files_hold_the_numbers_charts_and_failing_questions(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    report = run_report(eval_settings, eval_store, write_testset(tmp_path / "t.jsonl", TESTSET))

    written = write_report(report, tmp_path / "out")

    assert json.loads(written["json"].read_text(encoding="utf-8"))["routing"]["confusion"] == report["routing"]["confusion"]
    for chart in ("confusion", "quality", "latency"):
        assert written[chart].read_bytes().startswith(b"\x89PNG")
    markdown = written["markdown"].read_text(encoding="utf-8")
    assert "| domain | 1 | 1 | 1 |" in markdown  # the confusion-matrix row for domain questions
    assert "| missed escalations (needed a person, got the bot) | 1 |" in markdown
    assert "routed domain, expected escalate; degenerate" in markdown
    assert "did not cite returns.md, arrival-guarantee.md" in markdown
    assert "![confusion matrix](confusion.png)" in markdown


def test_compare_refuses_a_file_that_is_not_a_report(tmp_path: Path) -> None:
    markdown = tmp_path / "report.md"
    markdown.write_text("# Evaluation report\n", encoding="utf-8")
    with pytest.raises(ReportError, match="not JSON; pass the report.json"):
        load_report(markdown)
    other = tmp_path / "other.json"
    other.write_text('{"accuracy": 1}', encoding="utf-8")
    with pytest.raises(ReportError, match="not a supportbot eval report"):
        load_report(other)


def test_key_fact_counts_only_when_the_answer_states_it_first(
    tmp_path: Path, eval_settings: Settings, eval_store: ConversationStore
) -> None:
    ship = next(item for item in TESTSET if item["id"] == "ship")
    ret = next(item for item in TESTSET if item["id"] == "return")
    lines = [
        json.dumps({**ship, "key_fact": "March to October"}),  # "We ship live plants from March to October."
        json.dumps({**ret, "key_fact": ["30 days", "thirty days"]}),  # answered "Prices start at 12 EUR."
    ]
    report = run_report(eval_settings, eval_store, write_testset(tmp_path / "t.jsonl", lines))
    assert report["quality"]["retrieval"]["with_key_fact"] == 2
    assert report["quality"]["retrieval"]["key_fact_rate"] == 0.5
    assert [r["key_fact_hit"] for r in report["results"]] == [True, False]
    bad = write_testset(tmp_path / "bad.jsonl", [json.dumps({**ship, "key_fact": 30}), json.dumps(ret)])
    _, problems = load_testset(bad)
    assert problems and "key_fact" in problems[0].message
