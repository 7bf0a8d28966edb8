"""Does our trainer learn as much, as fast, as a plain peft loop on the same data and batch?

Both run in one process on the MedQuAD setup of `bench.bench_finetune` (500 question/answer
pairs split by disease, LoRA r=16 on every linear layer, alpha 32, lr 3e-4, batch 8, 256
tokens, 1 epoch, seed 0):

- **plain peft loop**: the script a newcomer writes: chat template without a system prompt,
  loss on the answer tokens (`model(..., labels=...)`), AdamW at a constant rate, no clipping.
- **ours**: `training.finetune.finetune` with the shipped defaults and the benchmark's system
  prompt, exactly as `supportbot train run` trains.
- optionally (`--with-linear`) **ours with linear decay**, the schedule before the change.

Held-out perplexity is measured on the answers of 100 pairs from other diseases, each model in
the format it was trained in (the base model in the same format gives the "before"). Tokens/s
counts every non-padding token of every step, the same way for both loops.

    .venv/bin/python -m bench.trainer_parity [--quick] [--with-linear]

Writes docs/benchmarks/trainer_parity.md (or --out).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import random
import shutil
import time
from pathlib import Path
from typing import Any

from bench.bench_finetune import (
    MED_SYSTEM,
    MEDQUAD,
    STATE,
    load_medquad,
    settings_for,
    training_bench_logging,
)
from bench.page import run_stamp

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "trainer_parity.md"

log = logging.getLogger("bench.trainer_parity")


def plain_peft_loop(base_dir: Path, train: list[Any], *, r: int, lr: float, batch: int, max_len: int,
                    seed: int, max_steps: int = 0) -> tuple[Any, Any, dict[str, float]]:
    """The baseline: a plain LoRA loop as one would write it from the peft docs."""
    import torch
    from peft import LoraConfig, get_peft_model

    from bot.model_assets import load_causal_lm

    torch.manual_seed(seed)
    model, tok = load_causal_lm(base_dir)
    model = get_peft_model(model, LoraConfig(
        r=r, lora_alpha=2 * r, lora_dropout=0.05, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    ))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = []
    for ex in train:
        prompt = tok.apply_chat_template([{"role": "user", "content": ex.question}], tokenize=False,
                                         add_generation_prompt=True)
        full = tok.apply_chat_template([{"role": "user", "content": ex.question},
                                        {"role": "assistant", "content": ex.answer}], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"][:max_len]
        labels = [-100] * len(p_ids) + ids[len(p_ids):]
        rows.append((ids, labels[: len(ids)]))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    tokens, steps = 0, 0
    started = time.perf_counter()
    for start in range(0, len(order), batch):
        chunk = [rows[i] for i in order[start : start + batch]]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in chunk])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in chunk])
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in chunk])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        tokens += int(mask.sum())
        steps += 1
        if steps % 10 == 0:
            log.info("plain loop: step %d, loss %.3f", steps, float(loss))
        if max_steps and steps >= max_steps:
            break
    wall = time.perf_counter() - started
    return model, tok, {"steps": steps, "tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def perplexity(model: Any, tok: Any, held: list[Any], system: str, max_len: int) -> float:
    from training.evaluate import heldout_loss

    loss, _ = heldout_loss(model, tok, held, system, max_len, "cpu", batch_size=8)
    return math.exp(loss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Four steps each: checks the script end to end.")
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--eval", type=int, default=100)
    parser.add_argument("--with-linear", action="store_true", help="Also train ours with linear decay.")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    training_bench_logging()

    import torch

    from bot.atomic import atomic_write_text
    from bot.model_assets import base_llm_dir, configure_torch_threads, force_offline, load_causal_lm
    from training.finetune import finetune

    force_offline()
    if args.quick:
        args.train, args.eval = 16, 8
    steps_cap = 4 if args.quick else 0
    common: dict[str, Any] = dict(lora_r=16, lora_alpha=32, lora_dropout=0.05, epochs=1, lr=3e-4, batch_size=8,
                                  grad_accum=1, max_length=256, checkpoint_every=1000, max_steps=steps_cap,
                                  eval_max_questions=0)
    state = STATE / "parity"
    settings = settings_for(state, MED_SYSTEM, 0, **common)
    configure_torch_threads(settings)
    shutil.rmtree(state / "training" / "work", ignore_errors=True)
    base_dir = base_llm_dir(settings)
    train, held, n_train_foci, n_held_foci = load_medquad(MEDQUAD, args.train, args.eval)

    base, tok = load_causal_lm(base_dir)
    base_ppl = {"plain": perplexity(base, tok, held, "", 256), "ours": perplexity(base, tok, held, MED_SYSTEM, 256)}
    del base
    rows: list[dict[str, Any]] = []

    model, tok, info = plain_peft_loop(base_dir, train, r=16, lr=3e-4, batch=8, max_len=256, seed=0,
                                       max_steps=steps_cap)
    rows.append({"name": "plain peft loop (constant lr, no system prompt, no clipping)",
                 "ppl": perplexity(model, tok, held, "", 256), "base": base_ppl["plain"], **info})
    del model

    variants = [("ours (shipped defaults: constant lr after 5 % warmup, system prompt, clipping 1.0)", "constant")]
    if args.with_linear:
        variants.append(("ours with linear decay (the default before this change)", "linear"))
    for name, schedule in variants:
        s = settings_for(state, MED_SYSTEM, 0, **common, lr_schedule=schedule)
        shutil.rmtree(state / "training" / "work", ignore_errors=True)
        result = finetune(s, train, base_dir=base_dir, data_hash=f"parity-{schedule}-{len(train)}", progress=True)
        kept = state / "adapters" / schedule  # the next variant's run clears the work folder
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(result.adapter_dir, kept)
        from peft import PeftModel

        base, tok = load_causal_lm(base_dir)
        tuned = PeftModel.from_pretrained(base, str(kept))
        rows.append({"name": name, "ppl": perplexity(tuned, tok, held, MED_SYSTEM, 256), "base": base_ppl["ours"],
                     "steps": result.steps, "tokens": result.tokens, "wall_s": result.wall_s,
                     "tokens_per_s": result.tokens_per_s})
        del tuned, base

    plain = rows[0]
    lines = [
        "# Trainer parity: ours vs a plain peft loop",
        "",
        run_stamp("bench.trainer_parity", argv, "quick run: 4 steps each" if args.quick else ""),
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); load average at the end {os.getloadavg()[0]:.1f}",
        f"- data: MedQuAD, {len(train)} training pairs from {n_train_foci} diseases; perplexity on the answers of "
        f"{len(held)} pairs from {n_held_foci} other diseases. LoRA r=16, alpha 32, dropout 0.05, every linear "
        "layer, lr 3e-4, batch 8, 256 tokens, 1 epoch, seed 0. All rows ran in this one process, one after "
        "the other.",
        "",
        "| trainer | steps | held-out perplexity before → after | change | tokens/s | vs plain |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        change = (row["ppl"] - row["base"]) / row["base"]
        lines.append(f"| {row['name']} | {row['steps']} | {row['base']:.2f} → {row['ppl']:.2f} | **{change:+.1%}** "
                     f"| {row['tokens_per_s']:.0f} | {row['tokens_per_s'] / plain['tokens_per_s']:.2f}× |")
    lines.append("")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
