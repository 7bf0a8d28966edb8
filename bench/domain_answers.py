"""Ways to use the domain model in a plant-care answer, judged right / wrong / handed off.

    .venv/bin/python -m bench.domain_answers             # base model; docs/benchmarks/domain_answers.md
    .venv/bin/python -m bench.domain_answers --adapter   # also train the seed adapter first (about 10 min)
    .venv/bin/python -m bench.domain_answers --quick     # 20 questions

Every plant-care question of the tuning sets (`bench/data/judged_tuning*.jsonl`; never a held-out
set) is answered on a fresh install in each of these ways, and every answer judged with the
item's keys:

- **memory only** (shipped, `domain.model_answers = "never"`): an expert entry's answer as written
  (similar) or its sentences (excerpt), or a hand-off;
- **model, checked** (`"checked"`): the model's answer grounded in the nearest entries, shown only
  when every number and plant it names, and most of its words, are in those entries;
- **model always** (`"always"`): the model's grounded (or bare) answer;
- **model picks the entry**: the model scores the memory's candidate entries (mean log-probability
  of each entry's answer after the question, minus the same without it) and the best one is
  given, as the similar answer would be.

"Within budget" applies the thresholds a calibration on these same questions gives each kind for
a 5 % wrong-answer budget (in-sample, so an upper bound on what the way can do). Generation runs on
llama.cpp when it is built (greedy, `domain.max_new_tokens`), else on transformers.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.handoff import REPO, fresh_runtime
from bench.page import page_arguments, run_stamp, write_page

OUT = REPO / "docs" / "benchmarks" / "domain_answers.md"
SETS = ["bench/data/judged_tuning.jsonl", "bench/data/judged_tuning_2.jsonl", "bench/data/judged_tuning_3.jsonl"]
BUDGET = 0.05


def domain_items(limit: int | None) -> list[Any]:
    from bot.evaluation.runner import load_testset

    items = []
    for name in SETS:
        if (REPO / name).exists():
            loaded, _ = load_testset(REPO / name)
            items += [i for i in loaded if i.expected_route == "domain" and i.turn == 0]
    return items[:limit] if limit else items


def judged_drafts(domain: Any, items: list[Any]) -> list[list[tuple[str, float | None, str]]]:
    """Per item, every draft the answerer proposes (kind, evidence, verdict), in order."""
    from bot.errors import AnswererUnavailable
    from bot.evaluation.judge import judge_answer
    from bot.interfaces import AskContext

    rows = []
    for item in items:
        try:
            draft = domain.answer(item.question, AskContext(channel="eval", event_id=item.id))
            drafts = [draft, *draft.alternatives]
        except AnswererUnavailable:
            drafts = []
        rows.append([(d.kind, d.evidence, judge_answer(d.text, handed_off=False, expected_route="domain",
                                                       key=item.key).verdict) for d in drafts])
    return rows


def summarise(name: str, items: list[Any], rows: list[list[tuple[str, float | None, str]]],
              kinds: set[str] | None = None) -> dict[str, Any]:
    """Shown as proposed (the first draft of the chosen kinds) and within the budget's thresholds."""
    from bot.evaluation.calibration import what_if
    from bot.handoff import AnswerGate, Record

    records = [Record(f"domain/{kind}", evidence if evidence is not None else 0.0, verdict, item.id, rank)
               for item, drafts in zip(items, rows, strict=True)
               for rank, (kind, evidence, verdict) in enumerate(d for d in drafts if kinds is None or d[0] in kinds)
               if verdict in ("right", "wrong")]
    shown = what_if(records, {})["all"]
    gate = AnswerGate.from_records(records, BUDGET)
    within = what_if(records, gate.thresholds)["all"]
    return {"name": name, "questions": len(items), "shown": shown, "within": within, "gate": gate.describe()}


def pmi_pick(runtime: Any, items: list[Any]) -> list[list[tuple[str, float | None, str]]]:
    """The model scores the memory's candidates for each question; its favourite is the answer."""
    from bot.evaluation.judge import judge_answer
    from bot.memory.answers import candidates, similar_draft
    from bot.model_assets import base_gguf_path

    memory, domain = runtime.memory, runtime.domain
    try:
        from llama_cpp import Llama
    except ImportError:
        return []
    import numpy as np

    llm = Llama(model_path=str(base_gguf_path(runtime.settings)), n_ctx=1024, logits_all=True, verbose=False,
                n_threads=os.cpu_count() or 2)
    system = runtime.settings.domain.system_prompt

    def prompt(question: str) -> str:
        return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
                f"<|im_start|>assistant\n")

    def mean_logprob(prefix: str, text: str) -> float:
        head = llm.tokenize(prefix.encode(), add_bos=False, special=True)
        tail = llm.tokenize(text.encode(), add_bos=False, special=False)[:96]
        llm.reset()
        llm.eval(head + tail)
        logits = np.asarray(llm.scores[: len(head) + len(tail)], dtype=np.float64)
        top = logits.max(axis=1, keepdims=True)
        logp = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
        return float(np.mean([logp[len(head) + i - 1, token] for i, token in enumerate(tail)]))

    prior: dict[str, float] = {}
    rows = []
    for item in items:
        found = memory.lookup(item.question, 3, k_answers=3)
        pool = candidates(item.question, found, domain.glossary, memory.idf, memory.vocabulary)
        if not pool:
            rows.append([])
            continue
        scored = []
        for candidate in pool[:4]:
            entry = candidate.hit.entry
            if entry.entry_id not in prior:
                prior[entry.entry_id] = mean_logprob(prompt("Tell me something about plant care."), entry.answer)
            scored.append((mean_logprob(prompt(item.question), entry.answer) - prior[entry.entry_id], candidate))
        score, best = max(scored, key=lambda pair: pair[0])
        verdict = judge_answer(similar_draft(best).text, handed_off=False, expected_route="domain", key=item.key).verdict
        rows.append([("model_pick", round(score, 4), verdict)])
    llm.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = page_arguments(__doc__, OUT)
    parser.add_argument("--adapter", action="store_true", help="train the seed adapter first and serve it")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    logging.disable(logging.WARNING)
    items = domain_items(20 if args.quick else None)
    results = []
    adapter_note = "the bundled base model (no adapter)"
    with tempfile.TemporaryDirectory(prefix="bench-domain-answers-") as tmp:
        settings, runtime = fresh_runtime(Path(tmp))
        try:
            if args.adapter:
                from training.run import run_training

                outcome = run_training(settings, store=runtime.store, force=True)
                runtime.domain.refresh_adapter(wait=True)
                adapter_note = f"the seed adapter ({outcome.status}: {outcome.message[:160]})"
            runtime.warm_up_domain()
            memory_rows = judged_drafts(runtime.domain, items)
            results.append(summarise("memory only (shipped)", items, memory_rows))
            for mode in ("checked", "always"):
                runtime.domain.cfg = runtime.domain.cfg.model_copy(update={"model_answers": mode})
                rows = judged_drafts(runtime.domain, items)
                results.append(summarise(f"model {mode}: its answers alone", items, rows, {"grounded", "generated"}))
                results.append(summarise(f"model {mode}, with the memory's answers first", items, rows))
            runtime.domain.cfg = runtime.domain.cfg.model_copy(update={"model_answers": "never"})
            pick = pmi_pick(runtime, items)
            if pick:
                results.append(summarise("model picks the entry", items, pick))
        finally:
            runtime.close()

    def cells(outcome: Any, questions: int) -> str:
        rate = f"{outcome.wrong / outcome.answered:.1%}" if outcome.answered else "–"
        return f"{outcome.right} / {outcome.wrong} / {questions - outcome.answered} | {rate} | {outcome.right / questions:.1%}"

    lines = [
        "# Ways to use the domain model in a plant-care answer",
        "",
        run_stamp("bench.domain_answers", argv, "20 questions" if args.quick else ""),
        f"- {os.cpu_count()} CPUs; {(time.perf_counter() - started) / 60:.1f} min; {len(items)} plant-care questions "
        f"of the tuning sets ({sum(not i.key.answerable for i in items)} that no expert entry answers); model: {adapter_note}",
        "",
        "Cells: right / wrong / handed off, the wrong-answer rate among the answers given, and the resolution "
        "(right answers among all the questions).",
        "",
        "| way | every draft shown: right / wrong / handed off | wrong rate | resolution | within a 5 % budget: "
        "right / wrong / handed off | wrong rate | resolution |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        lines.append(f"| {result['name']} | {cells(result['shown'], result['questions'])} | "
                     f"{cells(result['within'], result['questions'])} |")
    lines += ["", "Thresholds each way's calibration gives for the budget (in-sample):", ""]
    lines += [f"- {result['name']}: " + ("; ".join(result["gate"]) or "none") for result in results]
    lines.append("")
    write_page(args.out, lines)
    sys.stderr.write(f"{(time.perf_counter() - started) / 60:.1f} min\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
