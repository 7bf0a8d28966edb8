"""The gate promotes only a candidate that is better than what is served, and says why."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from bot.config import Settings, TrainingConfig
from bot.evaluation.metrics import rouge_l, token_f1
from bot.llm.guard import degenerate_reason
from training.dataset import Example
from training.evaluate import EvalResult, evaluate_adapters
from training.finetune import finetune
from training.gate import decide

HELD_OUT = [
    Example("How often should I water a Masdevallia orchid?", "Keep it evenly moist, every two to four days.",
            "seed"),
    Example("What light does a Phalaenopsis need?", "Bright, indirect light such as an east window.", "seed"),
]


def result(name: str, ppl: float, f1: float = 0.3, degenerate: float = 0.0, generated: int = 10) -> EvalResult:
    import math

    return EvalResult(name, math.log(ppl), ppl, f1, f1, degenerate, 10, generated, 1.0)


def test_gate_accepts_a_clearly_better_candidate() -> None:
    decision = decide(result("candidate", 7.1, f1=0.33), result("served", 11.1, f1=0.24), TrainingConfig())
    assert decision.promote
    assert "perplexity 7.10 vs served 11.10" in decision.summary


def test_gate_rejects_worse_or_marginal_perplexity_and_says_by_how_much() -> None:
    cfg = TrainingConfig(promote_margin=0.05)
    decision = decide(result("candidate", 9.8), result("served", 10.0), cfg)
    assert not decision.promote
    assert "needs <= 9.50" in decision.summary


def test_gate_rejects_a_candidate_whose_answers_got_worse_despite_lower_perplexity() -> None:
    cfg = TrainingConfig()
    worse_answers = decide(result("candidate", 7.0, f1=0.20), result("served", 11.0, f1=0.24), cfg)
    assert not worse_answers.promote and "token_f1 0.200 vs 0.240" in worse_answers.summary
    loops_more = decide(result("candidate", 7.0, f1=0.4, degenerate=0.3),
                        result("served", 11.0, f1=0.24, degenerate=0.1), cfg)
    assert not loops_more.promote and "degenerate answers 30% vs 10% (must not rise)" in loops_more.summary
    needs_gain = decide(result("candidate", 7.0, f1=0.25), result("served", 11.0, f1=0.24),
                        TrainingConfig(min_metric_gain=0.05))
    assert not needs_gain.promote


def test_looping_and_empty_answers_count_as_degenerate() -> None:
    loop = "\n".join(f"Genetic Testing Registry: {name} syndrome" for name in "ABCDEFG")
    assert degenerate_reason(loop)
    assert degenerate_reason("the soil the soil the soil the soil the soil the soil the soil")
    assert degenerate_reason("   ")
    good = ("Keep a Masdevallia evenly moist and never let it dry out completely. Water every two to "
            "four days in warm weather and use rainwater.")
    assert degenerate_reason(good) == ""


def test_answer_metrics_reward_overlap_with_the_reference() -> None:
    ref = "Water every two to four days with rainwater."
    assert token_f1(ref, ref) == 1.0 and rouge_l(ref, ref) == 1.0
    assert 0 < token_f1("Water it every week.", ref) < 1
    assert rouge_l("rainwater with days four to two every water", ref) < token_f1(
        "rainwater with days four to two every water", ref)
    assert token_f1("Bright light.", ref) == 0.0


def test_gate_on_real_evaluations_accepts_a_trained_adapter_and_rejects_a_broken_one(
    tiny_settings: Callable[..., Settings], tiny_llm_dir: Path, tmp_path: Path
) -> None:
    settings = tiny_settings(training__max_steps=4, training__epochs=100, training__batch_size=2,
                             training__lora_dropout=0.0)
    good = finetune(settings, HELD_OUT, base_dir=tiny_llm_dir, data_hash="good", progress=False).adapter_dir
    broken = tmp_path / "broken"
    shutil.copytree(good, broken)
    weights = load_file(str(broken / "adapter_model.safetensors"))
    generator = torch.Generator().manual_seed(0)
    save_file({k: torch.randn(v.shape, generator=generator) for k, v in weights.items()},
              str(broken / "adapter_model.safetensors"))

    results = evaluate_adapters(settings, tiny_llm_dir, HELD_OUT, {"base": None, "good": good, "broken": broken})
    assert results["good"].perplexity < results["base"].perplexity < results["broken"].perplexity
    assert decide(results["good"], results["base"], settings.training).promote
    rejected = decide(results["broken"], results["good"], settings.training)
    assert not rejected.promote and "perplexity" in rejected.summary


def test_evaluation_generates_answers_with_the_serving_repetition_guard(
    tiny_settings: Callable[..., Settings], tiny_llm_dir: Path
) -> None:
    settings = tiny_settings(training__eval_max_questions=2, training__eval_max_new_tokens=6,
                             domain__no_repeat_ngram_size=1)
    evaluated = evaluate_adapters(settings, tiny_llm_dir, HELD_OUT, {"base": None})["base"]
    assert evaluated.generated == 2 and [a["question"] for a in evaluated.answers] == [e.question for e in HELD_OUT]
    for row in evaluated.answers:
        words = row["answer"].split()
        assert len(words) == len(set(words)) or row["degenerate"]  # no unigram repeats allowed
        assert 0.0 <= row["token_f1"] <= 1.0


def test_a_generated_answer_is_judged_right_only_when_it_covers_the_reference_and_invents_nothing() -> None:
    from training.evaluate import judge_against_reference

    question = "How often should I water a Masdevallia orchid?"
    reference = "Keep it evenly moist and never let it dry out; water every two to four days with rainwater."
    assert judge_against_reference("Water every two to four days with rainwater and never let it dry out.",
                                   question, reference) == "right"
    assert judge_against_reference("Water it every 10 days.", question, reference) == "wrong", "a number it made up"
    assert judge_against_reference("Masdevallias are lovely orchids from the Andes.", question, reference) == "wrong"


def test_gate_refuses_a_candidate_that_gives_more_wrong_answers() -> None:
    import math

    def judged(name: str, right: int, wrong: int) -> EvalResult:
        return EvalResult(name, math.log(7.0 if name == "candidate" else 11.0), 7.0 if name == "candidate" else 11.0,
                          0.3, 0.3, 0.0, 10, 10, 1.0, judged_right=right, judged_wrong=wrong)

    refused = decide(judged("candidate", 2, 8), judged("served", 5, 5), TrainingConfig())
    assert not refused.promote and "judged answers 2 right / 8 wrong vs 5 / 5" in refused.summary
    assert decide(judged("candidate", 6, 4), judged("served", 5, 5), TrainingConfig()).promote


def test_model_list_says_whether_the_model_may_answer_customers_and_why(settings_factory) -> None:  # type: ignore[no-untyped-def]
    from bot.cli.adapters import may_answer_line

    served = {"metrics": {"candidate": {"judged_right": 1, "judged_wrong": 11}}}
    never = may_answer_line(settings_factory(), served)
    assert "does not answer customers on its own" in never and "1 right and 11 wrong (92% wrong" in never
    allowed = may_answer_line(settings_factory(**{"domain.model_answers": "checked"}), served)
    assert "may answer customers" in allowed and "only when the expert entries back its answer" in allowed
