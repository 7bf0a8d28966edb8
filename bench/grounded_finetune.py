"""Does training on the served prompt teach the model to use its expert entries? (issue #17)

MedQuAD (`../shared/datasets/medquad/qa.jsonl`), with the expert memory = the training pairs.
Two held-out sets:
- **answered in memory**: questions asked by two MedQuAD sources; one source's pair is a
  training pair (so it is in memory), the other source's pair is held out. The reference is the
  held-out source's own answer; "F1 vs memory" scores against the memory's answer instead.
- **absent diseases**: questions about diseases with no pair in training or memory.

Training pairs: questions asked by two sources contribute both pairs (each is the other's
answering entry, `training.grounding`), plus single pairs from other diseases. Two adapters on
the same pairs, same settings (r=16 all linear, lr 3e-4 constant, batch 8, 1 epoch, seed 0):
- **bare adapter**: today's training, bare question -> answer, 256 tokens;
- **grounded adapter**: every example with its `memory.ground_k` nearest entries, never its own
  (`Grounder`, `training.grounded_answer_share` of those with an answering entry see it), 768 tokens
  (batch 4 x 2 accumulated: the same steps).

Rows: base, base + grounding, bare adapter, bare adapter + grounding, grounded adapter +
grounding; "grounding" is the prompt the domain answerer serves (`grounded_messages`, the
nearest entries by question at `memory.ground_min_similarity`). Answers: llama.cpp on the GGUF
base with each adapter's GGUF copy (the served backend), greedy, serving's guard (degenerate
answers score 0). Entry length and answer length are the served defaults (`memory.ground_answer_chars`,
`domain.max_new_tokens`): with 400-character entries and 96-token answers even a verbatim copy of
the answering entry scores only 0.26 token F1 against the held-out source, which hides whether the
model uses its entries. Perplexity: HF on the reference answers in the same prompts.

    .venv/bin/python -m bench.grounded_finetune [--quick]

Writes docs/benchmarks/training.md (or --out), with the trainer-parity table of
`bench.trainer_parity` (docs/benchmarks/trainer_parity.md) appended when it exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from bench.bench_finetune import MED_SYSTEM, MEDQUAD, STATE, settings_for, training_bench_logging
from bench.page import run_stamp

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "training.md"

log = logging.getLogger("bench.grounded_finetune")


def _bucket(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


def build_sets(n_double: int, n_single: int, n_eval: int) -> dict[str, Any]:
    """Training pairs (= memory), and the two held-out sets, from MedQuAD."""
    from bot.memory.matching import canonical_question
    from training.dataset import Example

    by_question: dict[str, list[dict[str, str]]] = defaultdict(list)
    with MEDQUAD.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            answer = " ".join(row["answer"].split())
            if row["question"].strip() and 20 <= len(answer.split()) <= 400:
                by_question[canonical_question(row["question"])].append(
                    {"q": row["question"].strip(), "a": answer, "source": row["source"], "focus": row["focus"].lower()})
    held_focus = lambda f: _bucket(f) < 0.2  # noqa: E731  diseases that never reach training or memory
    doubles = sorted(
        (key for key, rows in by_question.items()
         if len({r["source"] for r in rows}) >= 2 and not held_focus(rows[0]["focus"])),
        key=_bucket,
    )
    answered_keys, double_keys = doubles[:n_eval], doubles[n_eval : n_eval + n_double]
    train: list[Any] = []
    answered: list[dict[str, Any]] = []
    for key in double_keys:
        first, second = _two_sources(by_question[key])
        train += [Example(first["q"], first["a"], first["source"]), Example(second["q"], second["a"], second["source"])]
    for key in answered_keys:
        in_memory, held = _two_sources(by_question[key])
        train.append(Example(in_memory["q"], in_memory["a"], in_memory["source"]))
        answered.append({"example": Example(held["q"], held["a"], held["source"]), "memory_answer": in_memory["a"]})
    used = set(double_keys) | set(answered_keys)
    singles = sorted((k for k, rows in by_question.items()
                      if k not in used and not held_focus(rows[0]["focus"])), key=lambda k: _bucket("s" + k))
    train += [Example(by_question[k][0]["q"], by_question[k][0]["a"], by_question[k][0]["source"])
              for k in singles[:n_single]]
    memory_foci = {r["focus"] for k in used | set(singles[:n_single]) for r in by_question[k]}
    absent_keys = sorted((k for k, rows in by_question.items()
                          if held_focus(rows[0]["focus"]) and rows[0]["focus"] not in memory_foci),
                         key=lambda k: _bucket("a" + k))[:n_eval]
    absent = [Example(by_question[k][0]["q"], by_question[k][0]["a"], by_question[k][0]["source"]) for k in absent_keys]
    return {"train": train, "answered": answered, "absent": absent, "n_double": len(double_keys)}


def _two_sources(rows: list[dict[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    first = rows[0]
    second = next(r for r in rows[1:] if r["source"] != first["source"])
    return first, second


def train_adapter(name: str, settings: Any, examples: list[Any], base_dir: Path, keep: Path,
                  reuse: bool = False) -> dict[str, Any]:
    from training.finetune import finetune

    info_path = keep.with_suffix(".json")
    if reuse and keep.is_dir() and info_path.is_file():
        log.info("reusing the %s adapter in %s", name, keep)
        return dict(json.loads(info_path.read_text(encoding="utf-8")))

    data_hash = hashlib.sha256(json.dumps([e.to_json() for e in examples]).encode()).hexdigest()
    shutil.rmtree(settings.state_dir / "training" / "work", ignore_errors=True)
    result = finetune(settings, examples, base_dir=base_dir, data_hash=f"{name}-{data_hash}", progress=True)
    shutil.rmtree(keep, ignore_errors=True)
    shutil.copytree(result.adapter_dir, keep)
    info = {"steps": result.steps, "wall_s": result.wall_s, "tokens_per_s": result.tokens_per_s,
            "skipped": result.skipped_examples}
    info_path.write_text(json.dumps(info), encoding="utf-8")
    return info


def perplexities(settings: Any, base_dir: Path, adapters: dict[str, Path | None],
                 cases: dict[str, list[Any]]) -> dict[tuple[str, str], float]:
    """HF perplexity of the reference answers, per (model, case), each case its own prompts."""
    from peft import PeftModel

    from bot.model_assets import load_causal_lm
    from training.evaluate import heldout_loss

    base, tok = load_causal_lm(base_dir)
    named = {k: v for k, v in adapters.items() if v is not None}
    model: Any = base
    for i, (name, path) in enumerate(named.items()):
        if i == 0:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=name)
        else:
            model.load_adapter(str(path), adapter_name=name)
    out: dict[tuple[str, str], float] = {}
    for adapter, path in adapters.items():
        if path is not None:
            model.set_adapter(adapter)
        # The base row runs the same model with its adapters switched off.
        scope = model.disable_adapter() if path is None and named else nullcontext()
        with scope:
            for case, examples in cases.items():
                loss, _ = heldout_loss(model, tok, examples, MED_SYSTEM, 768, "cpu", 4,
                                       settings.memory.ground_answer_chars)
                out[(adapter, case)] = math.exp(loss)
    return out


def generate(settings: Any, adapter: tuple[str, Path] | None, examples: list[Any], max_new_tokens: int) -> list[dict[str, Any]]:
    """Greedy answers from the served backend (llama.cpp, the adapter's GGUF copy) and the guard."""
    from bot.llm.backend import AdapterRef, GenerationParams
    from bot.llm.guard import DegenerateAnswer, GuardPolicy, finalize_answer
    from bot.llm.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(settings)
    model = backend.load(AdapterRef(version=adapter[0], path=adapter[1]) if adapter else None)
    policy = GuardPolicy.from_config(settings.domain)
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=0.0,
                              repetition_penalty=settings.domain.repetition_penalty,
                              no_repeat_ngram_size=settings.domain.no_repeat_ngram_size, stop=tuple(settings.domain.stop))
    rows = []
    try:
        for ex in examples:
            raw = model.generate(ex.prompt_messages(MED_SYSTEM, settings.memory.ground_answer_chars), params).text
            try:
                rows.append({"answer": finalize_answer(raw, policy), "degenerate": ""})
            except DegenerateAnswer as exc:
                rows.append({"answer": raw, "degenerate": str(exc)})
    finally:
        model.close()
    return rows


def score(rows: list[dict[str, Any]], references: list[str]) -> dict[str, float]:
    from bot.evaluation.metrics import rouge_l, token_f1

    n = len(rows)
    f1 = [0.0 if r["degenerate"] else token_f1(r["answer"], ref) for r, ref in zip(rows, references, strict=True)]
    rl = [0.0 if r["degenerate"] else rouge_l(r["answer"], ref) for r, ref in zip(rows, references, strict=True)]
    return {"token_f1": sum(f1) / n, "rouge_l": sum(rl) / n, "degenerate": sum(1 for r in rows if r["degenerate"]) / n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A few steps and questions: checks the script.")
    parser.add_argument("--double", type=int, default=80, help="Questions whose two sources both train.")
    parser.add_argument("--single", type=int, default=60, help="Single-source training pairs.")
    parser.add_argument("--questions", type=int, default=20, help="Held-out questions per set.")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--answer-share", type=float, default=None,
                        help="training.grounded_answer_share (default: the shipped value).")
    parser.add_argument("--reuse-adapters", action="store_true",
                        help="Evaluate the adapters an earlier run of the same command trained.")
    parser.add_argument("--threads", type=int, default=0, help="torch and llama.cpp threads (0 = one per core).")
    parser.add_argument("--entry-chars", type=int, default=0,
                        help="memory.ground_answer_chars (0 = the served default).")
    parser.add_argument("--new-tokens", type=int, default=0, help="Longest answer (0 = the served domain.max_new_tokens).")
    parser.add_argument("--grounded-max-length", type=int, default=768,
                        help="training.max_length of the grounded adapter: room for k entries and the answer.")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    training_bench_logging()

    from bot.atomic import atomic_write_text
    from bot.evaluation.metrics import rouge_l, token_f1
    from bot.model_assets import base_llm_dir, configure_torch_threads, force_offline, load_embedder
    from training.grounding import Grounder, MemoryNote, question_embedder

    force_offline()
    started = time.perf_counter()
    if args.quick:
        args.double, args.single, args.questions = 6, 6, min(args.questions, 3)
    # A quick run trains its own throwaway adapters: never the ones --reuse-adapters evaluates.
    state = STATE / ("grounded-quick" if args.quick else "grounded")
    common: dict[str, Any] = dict(lora_r=16, lora_alpha=32, lora_dropout=0.05, epochs=args.epochs, lr=3e-4,
                                  lr_schedule="constant", batch_size=8, grad_accum=1, checkpoint_every=1000,
                                  max_steps=2 if args.quick else 0)
    if args.answer_share is not None:
        common["grounded_answer_share"] = args.answer_share
    extra: dict[str, Any] = {"memory.ground_answer_chars": args.entry_chars} if args.entry_chars else {}
    if args.threads:
        extra["domain.llamacpp.threads"] = args.threads
    bare_settings = settings_for(state, MED_SYSTEM, args.threads, extra, max_length=256, **common)
    # Same optimizer steps and effective batch as the bare adapter; half the batch per forward pass,
    # because 8 grounded prompts of 768 tokens outgrow this machine's memory next to anything else.
    grounded_settings = settings_for(state, MED_SYSTEM, args.threads, extra,
                                     **{**common, "batch_size": 4, "grad_accum": 2,
                                        "max_length": args.grounded_max_length})
    new_tokens = 24 if args.quick else (args.new_tokens or grounded_settings.domain.max_new_tokens)
    configure_torch_threads(grounded_settings)
    base_dir = base_llm_dir(grounded_settings)
    sets = build_sets(args.double, args.single, args.questions)
    train = sets["train"]
    embedder = load_embedder(grounded_settings)
    grounder = Grounder.from_settings(
        grounded_settings, [MemoryNote(e.question, e.answer) for e in train],
        question_embedder(embedder),
    )
    grounded_train = grounder.ground(train)
    cases_bare = {"answered": [c["example"] for c in sets["answered"]], "absent": sets["absent"]}
    cases_grounded = {name: grounder.ground(examples, answer_share=1.0) for name, examples in cases_bare.items()}
    log.info("MedQuAD: %d training pairs (%d questions from two sources), %d + %d held out; grounding: %s",
             len(train), sets["n_double"], len(cases_bare["answered"]), len(cases_bare["absent"]), dict(grounder.stats))

    adapters_dir = state / "adapters"
    training_info = {
        "bare adapter": train_adapter("bare", bare_settings, train, base_dir, adapters_dir / "bare",
                                      args.reuse_adapters),
        "grounded adapter": train_adapter("grounded", grounded_settings, grounded_train, base_dir,
                                          adapters_dir / "grounded", args.reuse_adapters),
    }
    rows_spec = [  # (row, adapter, grounded prompt)
        ("base", None, False),
        ("base + grounding", None, True),
        ("bare adapter (today)", "bare", False),
        ("bare adapter + grounding", "bare", True),
        ("grounded adapter + grounding", "grounded", True),
    ]
    ppl = perplexities(grounded_settings, base_dir, {"base": None, "bare": adapters_dir / "bare",
                                                     "grounded": adapters_dir / "grounded"},
                       {f"{case}/{g}": (cases_grounded if g else cases_bare)[case]
                        for case in cases_bare for g in (False, True)})
    results: dict[tuple[str, str], dict[str, Any]] = {}
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row, adapter, grounded in rows_spec:
        for case in cases_bare:
            examples = (cases_grounded if grounded else cases_bare)[case]
            answers = generate(grounded_settings, (adapter, adapters_dir / adapter) if adapter else None, examples,
                               new_tokens)
            refs = [ex.answer for ex in examples]
            metrics = score(answers, refs)
            if case == "answered":
                metrics["f1_vs_memory"] = score(answers, [c["memory_answer"] for c in sets["answered"]])["token_f1"]
            metrics["perplexity"] = ppl[(adapter or "base", f"{case}/{grounded}")]
            results[(row, case)] = metrics
            samples[(row, case)] = answers
            log.info("%s / %s: %s", row, case, {k: round(v, 3) for k, v in metrics.items()})

    copy_f1 = sum(token_f1(c["memory_answer"], c["example"].answer) for c in sets["answered"]) / len(sets["answered"])
    copy_rl = sum(rouge_l(c["memory_answer"], c["example"].answer) for c in sets["answered"]) / len(sets["answered"])
    bare_f1 = results[("bare adapter (today)", "answered")]["token_f1"]
    ours = results[("grounded adapter + grounding", "answered")]["token_f1"]
    absent_gain = (results[("grounded adapter + grounding", "absent")]["token_f1"]
                   - results[("bare adapter (today)", "absent")]["token_f1"])
    lines = [
        "# Grounded fine-tune: does training on the served prompt teach the model to use its entries?",
        "",
        run_stamp("bench.grounded_finetune", argv, "quick run: 2 steps" if args.quick else "")
        + f"; whole run {(time.perf_counter() - started) / 60:.0f} min",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU threads; load average at the end "
        f"{os.getloadavg()[0]:.1f}",
        f"- memory = the {len(train)} training pairs ({sets['n_double']} questions asked by two MedQuAD sources "
        f"train both answers, {len(train) - 2 * sets['n_double'] - len(sets['answered'])} single pairs, and one "
        f"source of each 'answered' question); k = {grounded_settings.memory.ground_k} entries at cosine >= "
        f"{grounded_settings.memory.ground_min_similarity}, quoted up to {grounded_settings.memory.ground_answer_chars} "
        f"characters; grounded_answer_share {grounder.answer_share}; grounding of the training prompts: "
        f"{dict(grounder.stats)}",
        f"- answers: llama.cpp, greedy, up to {new_tokens} tokens",
        "- training: " + "; ".join(
            f"{name}: {info['steps']} steps in {info['wall_s'] / 60:.1f} min ({info['tokens_per_s']:.0f} tokens/s, "
            f"{info['skipped']} skipped)" for name, info in training_info.items()),
        "",
        f"## Answered in memory by another source ({len(cases_bare['answered'])} questions)",
        "",
        "| model | token F1 | ROUGE-L | F1 vs memory's answer | degenerate | perplexity |",
        "|---|---|---|---|---|---|",
        *[f"| {row} | {results[(row, 'answered')]['token_f1']:.3f} | {results[(row, 'answered')]['rouge_l']:.3f} | "
          f"{results[(row, 'answered')]['f1_vs_memory']:.3f} | {results[(row, 'answered')]['degenerate']:.0%} | "
          f"{results[(row, 'answered')]['perplexity']:.2f} |" for row, _, _ in rows_spec],
        f"| (no model: the memory's answer as written) | {copy_f1:.3f} | {copy_rl:.3f} | 1.000 | 0% | – |",
        "",
        f"Grounded adapter + grounding vs bare adapter: **{ours - bare_f1:+.3f}** token F1 (target ≥ +0.10: "
        f"{'met' if ours - bare_f1 >= 0.10 else 'NOT met'}).",
        "",
        f"## Absent diseases ({len(cases_bare['absent'])} questions)",
        "",
        "| model | token F1 | ROUGE-L | degenerate | perplexity |",
        "|---|---|---|---|---|",
        *[f"| {row} | {results[(row, 'absent')]['token_f1']:.3f} | {results[(row, 'absent')]['rouge_l']:.3f} | "
          f"{results[(row, 'absent')]['degenerate']:.0%} | {results[(row, 'absent')]['perplexity']:.2f} |"
          for row, _, _ in rows_spec],
        "",
        f"Grounded adapter + grounding vs bare adapter: **{absent_gain:+.3f}** token F1 (target: no worse: "
        f"{'met' if absent_gain >= -0.005 else 'NOT met'}).",
        "",
        "## Sample answers (answered in memory)",
        "",
    ]
    for i, case in enumerate(sets["answered"][:3]):
        lines += [f"**Q: {case['example'].question}**", "",
                  f"- reference: {case['example'].answer[:300]}",
                  f"- memory's answer (another source): {case['memory_answer'][:300]}"]
        for row, _, _ in rows_spec:
            ans = samples[(row, "answered")][i]
            lines.append(f"- {row}: {' '.join(ans['answer'].split())[:300]}"
                         + (f" _(degenerate: {ans['degenerate']})_" if ans["degenerate"] else ""))
        lines.append("")
    parity = args.out.parent / "trainer_parity.md"
    if parity.is_file() and not args.quick:  # the trainer's own figures, from their one run
        lines += ["", *("#" + line if line.startswith("# ") else line
                        for line in parity.read_text(encoding="utf-8").splitlines())]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
