"""The promotion gate: a candidate adapter replaces the served one only when it is clearly better.

Every rule compares against what customers get today (the served adapter, or the bare base
model when none is served), and every rule that fails says so in words staff can read in
Slack, because "kept v0003" without a reason teaches nobody what to label next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bot.config import TrainingConfig
from training.evaluate import EvalResult


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reference: str
    reasons: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        verdict = "promote" if self.promote else "keep the served model"
        return f"{verdict}: " + "; ".join(self.reasons)


def decide(candidate: EvalResult, reference: EvalResult, cfg: TrainingConfig) -> GateDecision:
    """Promote only if perplexity, the answer metric, the degenerate rate and the judged
    wrong-answer rate all pass. The judged figures are also what `supportbot model list` shows
    when telling ops whether the model may answer customers on its own (domain.model_answers)."""
    failures: list[str] = []
    passes: list[str] = []
    if candidate.loss_examples == 0 or not math.isfinite(candidate.perplexity):
        return GateDecision(False, reference.name, ["no held-out example could be scored"])

    needed = reference.perplexity * (1 - cfg.promote_margin)
    ppl = f"perplexity {candidate.perplexity:.2f} vs {reference.name} {reference.perplexity:.2f}"
    if candidate.perplexity <= needed:
        passes.append(ppl)
    else:
        failures.append(f"{ppl} (needs <= {needed:.2f}, {cfg.promote_margin:.0%} lower)")

    metric = cfg.answer_metric
    cand_m, ref_m = candidate.metric(metric), reference.metric(metric)
    text = f"{metric} {cand_m:.3f} vs {ref_m:.3f}"
    if candidate.generated == 0:
        passes.append(f"{metric} not measured (training.eval_max_questions = 0)")
    elif cand_m >= ref_m + cfg.min_metric_gain:
        passes.append(text)
    else:
        failures.append(f"{text} (needs >= {ref_m + cfg.min_metric_gain:.3f})")

    deg = f"degenerate answers {candidate.degenerate_rate:.0%} vs {reference.degenerate_rate:.0%}"
    if candidate.degenerate_rate <= reference.degenerate_rate:
        passes.append(deg)
    else:
        failures.append(f"{deg} (must not rise)")

    if candidate.generated:
        judged = (f"judged answers {candidate.judged_right} right / {candidate.judged_wrong} wrong vs "
                  f"{reference.judged_right} / {reference.judged_wrong}")
        if candidate.judged_wrong_rate <= reference.judged_wrong_rate or candidate.judged_wrong <= reference.judged_wrong:
            passes.append(judged)
        else:
            failures.append(f"{judged} (the wrong-answer rate must not rise)")

    if failures:
        return GateDecision(False, reference.name, failures + passes)
    return GateDecision(True, reference.name, passes)
