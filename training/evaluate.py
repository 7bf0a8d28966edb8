"""Held-out evaluation: perplexity, an answer metric from greedy generation, degenerate rate.

Perplexity alone rewards a model that copies the dataset's templates; the answer metric alone is
noisy on a dozen questions. Together, plus a count of degenerate answers (loops, repeats, empty
replies, which score zero), they catch the failure we saw on MedQuAD: lower perplexity and a
model that answers "Genetic Testing Registry: ..." over and over. Generation uses the same
repetition guard as serving (`settings.domain`), so we measure what customers would get.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.evaluation.metrics import rouge_l, token_f1
from bot.llm.guard import DegenerateAnswer, GuardPolicy, finalize_answer
from training.dataset import Example
from training.finetune import collate, pick_device, token_losses, tokenize_example

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# --- model evaluation --------------------------------------------------------------------------

# A generated answer is right when it covers this share of the reference's content words and
# claims nothing the reference does not (bot.memory.faithfulness): what a reader with the staff's
# answer beside it would accept. Measured on the bundled model, almost nothing passes.
JUDGED_MIN_RECALL = 0.5


def judge_against_reference(answer: str, question: str, reference: str) -> str:
    """"right" or "wrong" for a generated answer to a held-out labelled question."""
    from bot.glossary import Glossary
    from bot.memory.faithfulness import unsupported_claims
    from bot.memory.matching import _covered, content_words

    wanted = content_words(reference)
    said = content_words(answer)
    recall = sum(_covered(word, said) for word in wanted) / len(wanted) if wanted else 0.0
    if recall < JUDGED_MIN_RECALL or unsupported_claims(answer, question, [reference], Glossary.empty()):
        return "wrong"
    return "right"



@dataclass
class EvalResult:
    name: str
    loss: float
    perplexity: float
    token_f1: float
    rouge_l: float
    degenerate_rate: float
    loss_examples: int
    generated: int
    wall_s: float
    answers: list[dict[str, Any]] = field(default_factory=list)
    # Judged like a customer reads them (`judge_against_reference`): right, or wrong.
    judged_right: int = 0
    judged_wrong: int = 0

    @property
    def judged_wrong_rate(self) -> float:
        judged = self.judged_right + self.judged_wrong
        return self.judged_wrong / judged if judged else 0.0

    def metric(self, name: str) -> float:
        return float(getattr(self, name))

    def summary(self) -> dict[str, float | int]:
        return {
            "loss": round(self.loss, 4),
            "perplexity": round(self.perplexity, 3),
            "token_f1": round(self.token_f1, 4),
            "rouge_l": round(self.rouge_l, 4),
            "degenerate_rate": round(self.degenerate_rate, 4),
            "loss_examples": self.loss_examples,
            "generated": self.generated,
            "judged_right": self.judged_right,
            "judged_wrong": self.judged_wrong,
        }


def heldout_loss(
    model: Any, tokenizer: PreTrainedTokenizerBase, examples: list[Example], system: str,
    max_length: int, device: str, batch_size: int = 8, answer_chars: int = 700,
) -> tuple[float, int]:
    """Mean next-token loss over the reference answers' tokens (token-weighted), and #examples."""
    import torch

    tokenized = [tokenize_example(tokenizer, ex, system, max_length, answer_chars) for ex in examples]
    usable = [t for t in tokenized if t is not None]
    if not usable:
        return float("nan"), 0
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(usable), batch_size):
            batch = {k: v.to(device) for k, v in collate(usable[i : i + batch_size], pad_id).items()}
            loss_sum, n = token_losses(model, batch)
            total += float(loss_sum)
            count += n
    return total / max(count, 1), len(usable)


def generate_answers(
    model: Any, tokenizer: PreTrainedTokenizerBase, examples: list[Example], settings: Settings,
    device: str, max_new_tokens: int, batch_size: int = 8,
) -> list[str]:
    """Greedy answers with serving's repetition guard, batched with left padding, each asked with
    the prompt serving builds for it (its grounding entries included)."""
    import torch

    system = settings.domain.system_prompt
    answer_chars = settings.memory.ground_answer_chars
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers: list[str] = []
    model.eval()
    for i in range(0, len(examples), batch_size):
        prompts = []
        for ex in examples[i : i + batch_size]:
            messages = ex.prompt_messages(system, answer_chars)
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                repetition_penalty=settings.domain.repetition_penalty,
                no_repeat_ngram_size=settings.domain.no_repeat_ngram_size,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        for row in out[:, width:]:
            answers.append(str(tokenizer.decode(row, skip_special_tokens=True)).strip())
    return answers


def evaluate_model(
    name: str, model: Any, tokenizer: PreTrainedTokenizerBase, examples: list[Example],
    settings: Settings, device: str,
) -> EvalResult:
    cfg = settings.training
    started = time.perf_counter()
    loss, n_loss = heldout_loss(
        model, tokenizer, examples, settings.domain.system_prompt, cfg.max_length, device, cfg.batch_size,
        settings.memory.ground_answer_chars,
    )
    asked = examples[: cfg.eval_max_questions]
    generated = generate_answers(model, tokenizer, asked, settings, device, cfg.eval_max_new_tokens, cfg.batch_size)
    # Score what a customer would be shown: the serving guard trims loops and refuses
    # degenerate answers (which score zero), exactly as in production.
    policy = GuardPolicy.from_config(settings.domain)
    rows: list[dict[str, Any]] = []
    for ex, raw in zip(asked, generated, strict=True):
        try:
            text, why = finalize_answer(raw, policy), ""
        except DegenerateAnswer as exc:
            text, why = raw, str(exc)
        rows.append({
            "question": ex.question,
            "reference": ex.answer,
            "answer": text,
            "degenerate": why,
            "token_f1": 0.0 if why else token_f1(text, ex.answer),
            "rouge_l": 0.0 if why else rouge_l(text, ex.answer),
            "judged": "wrong" if why else judge_against_reference(text, ex.question, ex.answer),
        })
    n = len(rows)
    result = EvalResult(
        name=name,
        loss=loss,
        perplexity=math.exp(loss) if math.isfinite(loss) else float("nan"),
        token_f1=sum(r["token_f1"] for r in rows) / n if n else 0.0,
        rouge_l=sum(r["rouge_l"] for r in rows) / n if n else 0.0,
        degenerate_rate=sum(1 for r in rows if r["degenerate"]) / n if n else 0.0,
        loss_examples=n_loss,
        generated=n,
        wall_s=time.perf_counter() - started,
        answers=rows,
        judged_right=sum(r["judged"] == "right" for r in rows),
        judged_wrong=sum(r["judged"] == "wrong" for r in rows),
    )
    log.info("%s: perplexity %.2f, %s %.3f, degenerate %.0f%%, judged %d right / %d wrong (%d questions, %.0fs)",
             name, result.perplexity, cfg.answer_metric, result.metric(cfg.answer_metric),
             100 * result.degenerate_rate, result.judged_right, result.judged_wrong, n, result.wall_s)
    return result


def evaluate_adapters(
    settings: Settings, base_dir: Path, examples: list[Example], adapters: dict[str, Path | None]
) -> dict[str, EvalResult]:
    """Evaluate the base model and each adapter on the same held-out examples.

    `adapters` maps a name to an adapter folder, or None for the bare base model. The base is
    loaded once and each adapter attached by name, which is also how serving loads them.
    """
    from bot.model_assets import load_causal_lm

    device = pick_device(settings.training.device)
    base, tokenizer = load_causal_lm(base_dir)
    base.to(device)
    named = {k: v for k, v in adapters.items() if v is not None}
    results: dict[str, EvalResult] = {}
    if not named:
        for name in adapters:
            results[name] = evaluate_model(name, base, tokenizer, examples, settings, device)
        return results
    from peft import PeftModel

    first, *rest = named.items()
    model = PeftModel.from_pretrained(base, str(first[1]), adapter_name=first[0])
    for adapter_name, adapter_path in rest:
        model.load_adapter(str(adapter_path), adapter_name=adapter_name)
    model.to(device)
    for name, path in adapters.items():
        if path is None:
            with model.disable_adapter():
                results[name] = evaluate_model(name, model, tokenizer, examples, settings, device)
        else:
            model.set_adapter(name)
            results[name] = evaluate_model(name, model, tokenizer, examples, settings, device)
    return results
