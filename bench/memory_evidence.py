"""Fit the expert memory's evidence (which entry answers, and how surely) on the tuning sets.

    .venv/bin/python -m bench.memory_evidence            # docs/benchmarks/memory_evidence.md; prints the weights
    .venv/bin/python -m bench.memory_evidence --quick    # one tuning set

For every plant-care question of the tuning sets, the memory's candidate entries (the nearest by
question and by question-with-answer, minus those about another plant or topic) each become a row
of `bot.memory.answers.ENTRY_FEATURES`, positive when that entry's answer, given as a similar
answer, is judged right (`bot.evaluation.judge`). A logistic regression over them is the entry
evidence; the excerpt's sentence model is fitted the same way on the sentences of the top entries
(each quoted with the sentence after it).
Cross-validated by question (five folds), the table shows how many questions the best entry
answers right within a 5 % and a 10 % wrong-answer rate, against the raw cosines. Paste the
printed weights into bot/memory/answers.py to ship a refit.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.handoff import REPO, fresh_runtime
from bench.lead_weights import best_within
from bench.page import page_arguments, run_stamp, write_page

OUT = REPO / "docs" / "benchmarks" / "memory_evidence.md"
TUNING = ["bench/data/judged_tuning.jsonl", "bench/data/judged_tuning_2.jsonl", "bench/data/judged_tuning_3.jsonl"]
STRENGTHS = (0.3, 1.0, 3.0)


def collect(runtime: Any, items: list[Any]) -> list[list[tuple[tuple[float, ...], str, Any]]]:
    """Per question: its candidates (features, verdict of the similar answer, candidate)."""
    from bot.evaluation.judge import judge_answer
    from bot.memory.answers import candidates, similar_draft

    memory, glossary = runtime.memory, runtime.domain.glossary
    rows = []
    for item in items:
        found = memory.lookup(item.question, 3, k_answers=3)
        pool = candidates(item.question, found, glossary, memory.idf, memory.vocabulary)
        rows.append([(c.features, judge_answer(similar_draft(c).text, handed_off=False, expected_route="domain",
                                               key=item.key).verdict, c) for c in pool])
    return rows


def sentence_rows(runtime: Any, items: list[Any], rows: list[list[tuple[tuple[float, ...], str, Any]]]
                  ) -> list[list[tuple[tuple[float, ...], str, Any]]]:
    """Per question: every sentence of its top candidates as an excerpt would quote it (with the next
    one), its SENTENCE_FEATURES and the excerpt's verdict."""
    from bot.answerers.policy_units import split_sentences
    from bot.evaluation.judge import judge_answer
    from bot.memory.answers import EXCERPT_ENTRIES, EXCERPT_SENTENCES, _coverage
    from bot.memory.framing import excerpt_text
    from bot.memory.matching import canonical_question, content_words

    memory = runtime.memory
    out = []
    for item, question in zip(items, rows, strict=True):
        vector = np.asarray(memory.embed_query(canonical_question(item.question)), dtype=np.float32)
        asked = content_words(item.question)
        found = []
        for _, _, candidate in question[:EXCERPT_ENTRIES]:
            sentences = split_sentences(candidate.hit.entry.answer)
            if not sentences:
                continue
            cosine = np.asarray(memory.embed_texts(sentences)) @ vector
            for index, sentence in enumerate(sentences):
                text = excerpt_text(candidate.hit.entry.question, " ".join(sentences[index:index + EXCERPT_SENTENCES]))
                verdict = judge_answer(text, handed_off=False, expected_route="domain", key=item.key).verdict
                found.append(((float(cosine[index]), _coverage(asked, sentence), candidate.evidence), verdict, None))
        out.append(found)
    return out


def fit(rows: list[list[tuple[tuple[float, ...], str, Any]]], strength: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    features = np.asarray([f for question in rows for f, _, _ in question])
    labels = np.asarray([v == "right" for question in rows for _, v, _ in question])
    model = LogisticRegression(C=strength, max_iter=3000, class_weight="balanced").fit(features, labels)
    return model.coef_[0], float(model.intercept_[0])


def best_entries(rows: list[list[tuple[tuple[float, ...], str, Any]]], weights: np.ndarray,
                 bias: float) -> list[tuple[float | None, str]]:
    out: list[tuple[float | None, str]] = []
    for question in rows:
        if not question:
            out.append((None, "handed_off"))
            continue
        scores = [float(np.dot(weights, f) + bias) for f, _, _ in question]
        best = int(np.argmax(scores))
        out.append((scores[best], question[best][1]))
    return out


def main(argv: list[str] | None = None) -> int:
    args = page_arguments(__doc__, OUT).parse_args(argv)
    started = time.perf_counter()
    import logging

    from bot.evaluation.runner import load_testset
    from bot.memory import answers

    logging.disable(logging.WARNING)
    names = TUNING[:1] if args.quick else [n for n in TUNING if (REPO / n).exists()]
    items = []
    for name in names:
        loaded, _ = load_testset(REPO / name)
        items += [i for i in loaded if i.expected_route == "domain" and i.turn == 0]
    with tempfile.TemporaryDirectory(prefix="bench-memory-evidence-") as tmp:
        _, runtime = fresh_runtime(Path(tmp))
        try:
            rows = collect(runtime, items)
            sentences = sentence_rows(runtime, items, rows)
        finally:
            runtime.close()
    shipped = np.asarray([answers.ENTRY_WEIGHTS.get(n, 0.0) for n in answers.ENTRY_FEATURES])
    table = [("in the code (in-sample)", best_entries(rows, shipped, answers.ENTRY_BIAS))]
    for column, label in ((0, "raw cosine, question with answer"), (1, "raw cosine, question alone")):
        unit = np.zeros(len(answers.ENTRY_FEATURES))
        unit[column] = 1.0
        table.append((label, best_entries(rows, unit, 0.0)))
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    fold_sets = [order[i::5] for i in range(5)]
    for strength in STRENGTHS:
        held: list[tuple[float | None, str]] = []
        for fold in fold_sets:
            weights, bias = fit([rows[i] for i in order if i not in fold], strength)
            held += best_entries([rows[i] for i in fold], weights, bias)
        table.append((f"refit, C={strength} (cross-validated)", held))
    weights, bias = fit(rows, 1.0)
    sentence_weights, sentence_bias = fit([q for q in sentences if q], 1.0)
    shipped_sentences = np.asarray([answers.SENTENCE_WEIGHTS.get(n, 0.0) for n in answers.SENTENCE_FEATURES])
    excerpts = best_entries(sentences, shipped_sentences, answers.SENTENCE_BIAS)
    n = len(items)
    right_somewhere = sum(any(v == "right" for _, v, _ in q) for q in rows)
    lines = [
        "# Expert memory evidence: which entry answers, and how surely",
        "",
        run_stamp("bench.memory_evidence", argv, "one tuning set" if args.quick else ""),
        f"- {os.cpu_count()} CPUs; {(time.perf_counter() - started) / 60:.1f} min; {n} plant-care questions of "
        + ", ".join(f"`{s}`" for s in names)
        + f" ({sum(not i.key.answerable for i in items)} that no entry answers); a right entry is among the "
        f"candidates for {right_somewhere}",
        "",
        "| scoring | right if every best entry is shown | right within 5 % wrong | within 10 % wrong |",
        "|---|---|---|---|",
    ]
    for label, pairs in table:
        lines.append(f"| {label} | {sum(v == 'right' for _, v in pairs)} | {best_within(pairs, 0.05)} | "
                     f"{best_within(pairs, 0.10)} |")
    printed = ", ".join(f'"{name}": {round(float(w), 3)}' for name, w in zip(answers.ENTRY_FEATURES, weights,
                                                                             strict=True))
    lines += [
        "",
        f"Excerpts (the best sentence of the top {answers.EXCERPT_ENTRIES} entries, and the next one), with the "
        f"sentence weights in the code: {sum(v == 'right' for _, v in excerpts)} right if every one is shown, "
        f"{best_within(excerpts, 0.05)} within 5 % wrong, {best_within(excerpts, 0.10)} within 10 %. Whether an "
        "excerpt is ever shown after a held-back similar answer is the calibration's call "
        "(docs/benchmarks/handoff.md).",
        "",
        "Refit on every tuning question (C=1.0), to paste into `bot/memory/answers.py`:",
        "",
        f"- `ENTRY_WEIGHTS = {{{printed}}}`, `ENTRY_BIAS = {round(bias, 3)}`",
        "- `SENTENCE_WEIGHTS = {" + ", ".join(f'"{name}": {round(float(w), 3)}' for name, w in
                                             zip(answers.SENTENCE_FEATURES, sentence_weights, strict=True))
        + f"}}`, `SENTENCE_BIAS = {round(sentence_bias, 3)}`",
        "",
    ]
    write_page(args.out, lines)
    sys.stderr.write(lines[-2] + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
