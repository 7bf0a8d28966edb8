"""The Hugging Face backend on the tiny random model: limits, adapters, streaming, concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.answerers.domain_model import build_domain_answerer
from bot.errors import AnswererUnavailable
from bot.interfaces import AskContext

QUESTION = "How often should I water a Masdevallia orchid?"


def test_answer_stays_within_the_token_and_character_limits(domain_settings):
    settings = domain_settings(domain__max_new_tokens=12, domain__max_answer_chars=40)
    answerer = build_domain_answerer(settings)
    try:
        version, result = answerer.run_generation(
            [{"role": "user", "content": QUESTION}], answerer.params(), answerer.policy
        )
        assert 1 <= result.new_tokens <= 12
        draft = answerer.answer(QUESTION, AskContext())
    finally:
        answerer.close()
    assert len(draft.text) <= 42  # 40 characters, plus an ellipsis when cut mid-sentence
    assert draft.text.strip()
    assert draft.model_version == "base"


def test_base_model_serves_when_no_adapter_is_promoted(domain_settings):
    answerer = build_domain_answerer(domain_settings())
    assert answerer.current_version == "base"
    try:
        answerer.warm_up()
        assert answerer.current_version == "base"
        assert answerer.answer(QUESTION, AskContext()).model_version == "base"
    finally:
        answerer.close()


def test_promoted_adapter_changes_the_answer_and_is_reported(domain_settings, tiny_adapters, promote):
    base = build_domain_answerer(domain_settings())
    base_text = base.answer(QUESTION, AskContext()).text
    base.close()
    settings = domain_settings()
    version = promote(settings, tiny_adapters["a"])
    tuned = build_domain_answerer(settings)
    try:
        draft = tuned.answer(QUESTION, AskContext())
    finally:
        tuned.close()
    assert draft.model_version == version
    assert draft.text != base_text


def test_merged_adapter_answers_like_the_unmerged_one(domain_settings, tiny_adapters, promote):
    """Merging the adapter into the weights is a speed choice only: the greedy answer must not change."""
    answers = []
    for merge in (False, True):
        settings = domain_settings(
            domain__hf__merge_adapter=merge, domain__hf__quantization="none", domain__hf__dtype="float32"
        )
        promote(settings, tiny_adapters["a"])
        answerer = build_domain_answerer(settings)
        answers.append(answerer.answer(QUESTION, AskContext()).text)
        answerer.close()
    assert answers[0] == answers[1]


def test_broken_adapter_keeps_the_base_model_serving(domain_settings, tmp_path, promote, caplog):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}', encoding="utf-8")
    settings = domain_settings()
    version = promote(settings, broken)
    answerer = build_domain_answerer(settings)
    try:
        draft = answerer.answer(QUESTION, AskContext())
    finally:
        answerer.close()
    assert draft.model_version == "base"
    assert draft.text
    assert any(version in r.getMessage() and "failed to load" in r.getMessage() for r in caplog.records)


def test_partial_answers_grow_and_never_repeat(domain_settings):
    answerer = build_domain_answerer(domain_settings())
    partials: list[str] = []
    try:
        final = answerer.answer(QUESTION, AskContext(), on_partial=partials.append)
    finally:
        answerer.close()
    assert len(partials) >= 3
    assert all(b.startswith(a) and b != a for a, b in zip(partials, partials[1:], strict=False))
    assert final.text.startswith(partials[0])


def test_failing_partial_callback_does_not_cost_the_answer(domain_settings):
    answerer = build_domain_answerer(domain_settings())

    def broken_slack_update(text: str) -> None:
        raise RuntimeError("chat.update failed")

    try:
        draft = answerer.answer(QUESTION, AskContext(), on_partial=broken_slack_update)
    finally:
        answerer.close()
    assert draft.text


def test_concurrent_requests_get_the_same_answers_as_sequential_ones(domain_settings):
    answerer = build_domain_answerer(domain_settings())
    questions = [QUESTION, "Why are my Nepenthes pitchers turning brown?", "Can I repot a cactus in winter?"]
    try:
        expected = {q: answerer.answer(q, AskContext()).text for q in questions}
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def ask(i: int) -> None:
            try:
                results[i] = answerer.answer(questions[i % 3], AskContext())
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        answerer.close()
    assert not errors
    assert {i: d.text for i, d in results.items()} == {i: expected[questions[i % 3]] for i in range(6)}


def test_generator_serves_other_answerers_prompts(domain_settings):
    answerer = build_domain_answerer(domain_settings())
    try:
        text = answerer.generator.generate(
            [{"role": "system", "content": "Answer from the policy."}, {"role": "user", "content": "Ship to Norway?"}],
            max_new_tokens=8,
        )
    finally:
        answerer.close()
    assert text.strip()


def test_missing_base_model_makes_the_answerer_unavailable(settings_factory, tmp_path: Path):
    settings = settings_factory(**{"models.base_llm_path": str(tmp_path / "nowhere"), "domain.backend": "hf",
                                   "domain.model_answers": "always"})
    answerer = build_domain_answerer(settings)
    with pytest.raises(AnswererUnavailable, match="base_llm_path"):
        answerer.answer(QUESTION, AskContext())


def test_question_longer_than_the_context_is_a_clear_fallback(domain_settings):
    answerer = build_domain_answerer(domain_settings())
    try:
        with pytest.raises(AnswererUnavailable, match="too long for the domain model"):
            answerer.answer("orchid " * 3000, AskContext())
    finally:
        answerer.close()
