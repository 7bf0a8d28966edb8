"""Fit the policy lead's unit scorer and its evidence model on the tuning sets, and check them.

    .venv/bin/python -m bench.lead_weights            # docs/benchmarks/lead_weights.md; prints the weights
    .venv/bin/python -m bench.lead_weights --quick    # one tuning set

Two logistic regressions, both on the tuning sets' policy questions only:

1. **The unit scorer** (`bot.answerers.lead.WEIGHTS` over `FEATURES`): every unit of a question's
   best sections is a row; it is a positive when it states an accepted fact of the question and no
   rejected one (`bot.evaluation.judge`), so the fit learns which unit answers.
2. **The evidence model** (`EVIDENCE_WEIGHTS` over `EVIDENCE_FEATURES`): every answered question is
   a row, positive when the lead the scorer chose is judged right; its log-odds is the evidence the
   answer-or-hand-off decision compares with the calibrated threshold (bench.handoff).

Each is cross-validated (five folds by question): the table gives, for the weights in the code and
for each regularisation strength, how many answers are right and how many the lead would give
right within a 5 % and a 10 % wrong-answer rate (the best threshold in hindsight on the held-out
folds). Behaviour tests of the lead (`tests/knowledge/test_policy_leads.py`) are checked as
"probes". Paste the printed weights into bot/answerers/lead.py to ship a refit.
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

from bench.page import page_arguments, run_stamp, write_page

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "lead_weights.md"
TUNING = ["bench/data/policy_tuning.jsonl", "bench/data/judged_tuning.jsonl", "bench/data/judged_tuning_2.jsonl",
          "bench/data/judged_tuning_3.jsonl"]
TEST = "data/policy_testset.jsonl"  # reported, never fitted on
STRENGTHS = (0.1, 0.3, 1.0)
PROBES = [("How long do I have to return an item?", "within 30 days of delivery"),
          ("What does it cost to ship to Ontario?", "$29.95"), ("Is return shipping free?", "$6.95"),
          ("How can I turn on two-step sign-in?", "Account > Security"),
          ("Is there a warranty on live plants?", "warranty"),
          ("What does the Grower plan cost per month?", "$9.99 per month")]


def best_within(records: list[tuple[float | None, str]], budget: float) -> int:
    """Right answers at the lowest threshold whose answers are wrong at most `budget` of the time."""
    rows = sorted((r for r in records if r[0] is not None), key=lambda r: -float(r[0] or 0))
    best = right = wrong = 0
    for _, verdict in rows:
        right += verdict == "right"
        wrong += verdict == "wrong"
        if wrong <= budget * (right + wrong):
            best = max(best, right)
    return best


class Bench:
    def __init__(self, tmp: Path) -> None:
        from bench.policy_answers import build
        from bot.answerers.retrieval import RetrievalAnswerer
        from bot.glossary import Glossary

        self.settings, self.kb = build(tmp)
        self.answerer = RetrievalAnswerer(self.settings.knowledge, self.kb,
                                          glossary=Glossary.load(REPO / "data" / "glossary.yaml"))
        self.answerer.warm_up()

    def items(self, names: list[str]) -> list[Any]:
        from bot.evaluation.runner import load_testset

        found = []
        for name in names:
            loaded, _ = load_testset(REPO / name)
            found += [i for i in loaded if i.expected_route == "retrieval" and i.turn == 0]
        return found

    def unit_rows(self, items: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        from bot.answerers import lead
        from bot.evaluation.judge import contains_phrase, normalize_for_match

        def states(text: str, key: Any) -> int:
            normal = normalize_for_match(text)
            if any(contains_phrase(normal, p) for p in key.reject):
                return 0
            return int(any(all(contains_phrase(normal, p) for p in group) for group in key.accept))

        rows = []
        for item in items:
            question = self.answerer.with_places(item.question)
            hits = self.kb.search(question)[: self.settings.knowledge.lead_sections]
            candidates, features = lead.unit_features(question, self.kb.embed_query(question), hits,
                                                      self.answerer._unit_vectors, names=self.answerer.names())
            labels = [states(unit.text, item.key) if item.key.answerable else 0 for _, unit in candidates]
            rows.append((features, np.asarray(labels)))
        return rows

    def judged(self, items: list[Any], weights: dict[str, float], bias: float) -> list[tuple[float | None, str, Any]]:
        """Each item answered with these scorer weights: (evidence, verdict, evidence features)."""
        from bot.answerers import lead
        from bot.errors import AnswererUnavailable
        from bot.evaluation.judge import judge_answer
        from bot.interfaces import AskContext

        saved = dict(lead.WEIGHTS), lead.BIAS
        lead.WEIGHTS.clear()
        lead.WEIGHTS.update(weights)
        lead.BIAS = bias
        try:
            out = []
            for item in items:
                try:
                    draft = self.answerer.answer(item.question, AskContext(channel="eval"))
                except AnswererUnavailable:
                    out.append((None, "handed_off", None))
                    continue
                verdict = judge_answer(draft.text, handed_off=False, expected_route="retrieval", key=item.key,
                                       key_facts=item.key_facts).verdict
                question = self.answerer.with_places(item.question)
                hits = self.kb.search(question)
                scored = self.answerer.scored_units(question, hits)
                out.append((draft.evidence, verdict, np.asarray(lead.evidence_features(question, scored, hits))))
            return out
        finally:
            lead.WEIGHTS.clear()
            lead.WEIGHTS.update(saved[0])
            lead.BIAS = saved[1]

    def probes(self, weights: dict[str, float], bias: float) -> str:
        from bot.answerers import lead
        from bot.interfaces import AskContext

        saved = dict(lead.WEIGHTS), lead.BIAS
        lead.WEIGHTS.clear()
        lead.WEIGHTS.update(weights)
        lead.BIAS = bias
        try:
            ok = sum(want in self.answerer.answer(q, AskContext()).text.split("\n")[0] for q, want in PROBES)
        finally:
            lead.WEIGHTS.clear()
            lead.WEIGHTS.update(saved[0])
            lead.BIAS = saved[1]
        return f"{ok}/{len(PROBES)}"


def fit(rows: list[tuple[np.ndarray, np.ndarray]], strength: float, names: tuple[str, ...]) -> tuple[dict[str, float], float]:
    from sklearn.linear_model import LogisticRegression

    features = np.vstack([r[0] for r in rows])
    labels = np.concatenate([r[1] for r in rows])
    model = LogisticRegression(C=strength, max_iter=3000, class_weight="balanced").fit(features, labels)
    return dict(zip(names, (round(float(w), 3) for w in model.coef_[0]), strict=True)), round(float(model.intercept_[0]), 3)


def folds(count: int, k: int = 5, seed: int = 0) -> list[list[int]]:
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return [order[i::k] for i in range(k)]


def main(argv: list[str] | None = None) -> int:
    args = page_arguments(__doc__, OUT).parse_args(argv)
    started = time.perf_counter()
    import logging

    from sklearn.linear_model import LogisticRegression

    from bot.answerers import lead

    logging.disable(logging.WARNING)
    names = TUNING[:2] if args.quick else TUNING
    with tempfile.TemporaryDirectory(prefix="bench-lead-") as tmp:
        bench = Bench(Path(tmp))
        items = bench.items(names)
        rows = bench.unit_rows(items)
        shipped = (dict(lead.WEIGHTS), lead.BIAS)
        table = []
        shipped_judged = bench.judged(items, *shipped)
        table.append(("in the code (in-sample)", shipped_judged, bench.probes(*shipped)))
        for strength in STRENGTHS:
            held: list[tuple[float | None, str, Any]] = []
            for fold in folds(len(items)):
                train = [rows[i] for i in range(len(items)) if i not in fold]
                weights, bias = fit(train, strength, lead.FEATURES)
                held += bench.judged([items[i] for i in fold], weights, bias)
            table.append((f"refit, C={strength} (cross-validated)", held,
                          bench.probes(*fit(rows, strength, lead.FEATURES))))
        refit = fit(rows, 0.3, lead.FEATURES)
        # The evidence model, on the shipped scorer's answers.
        answered = [(f, v) for _, v, f in shipped_judged if f is not None and v in ("right", "wrong")]
        evidence_table = [("in the code (in-sample)", [(e, v) for e, v, _ in shipped_judged])]
        for strength in STRENGTHS:
            held_e: list[tuple[float | None, str]] = []
            for fold in folds(len(answered), seed=2):
                train = [answered[i] for i in range(len(answered)) if i not in fold]
                model = LogisticRegression(C=strength, max_iter=3000).fit(
                    np.vstack([f for f, _ in train]), np.asarray([v == "right" for _, v in train]))
                held_e += [(float(model.decision_function([answered[i][0]])[0]), answered[i][1]) for i in fold]
            evidence_table.append((f"refit, C={strength} (cross-validated)", held_e))
        evidence_model = LogisticRegression(C=0.3, max_iter=3000).fit(
            np.vstack([f for f, _ in answered]), np.asarray([v == "right" for _, v in answered]))
        test_items = bench.items([TEST])
        test = bench.judged(test_items, *shipped)
        bench.kb.close()
    n = len(items)
    lines = [
        "# The policy lead: unit scorer and evidence, fitted on the tuning sets",
        "",
        run_stamp("bench.lead_weights", argv, "two tuning sets" if args.quick else ""),
        f"- {os.cpu_count()} CPUs; {(time.perf_counter() - started) / 60:.1f} min; {n} policy questions of "
        + ", ".join(f"`{s}`" for s in names) + f"; check set `{TEST}` ({len(test_items)} questions, never fitted on)",
        "",
        "## Unit scorer",
        "",
        "| weights | right (of all) | right within 5 % wrong | within 10 % wrong | behaviour probes |",
        "|---|---|---|---|---|",
    ]
    for label, judged, probes in table:
        pairs = [(e, v) for e, v, _ in judged]
        lines.append(f"| {label} | {sum(v == 'right' for _, v in pairs)} / {n} | {best_within(pairs, 0.05)} | "
                     f"{best_within(pairs, 0.10)} | {probes} |")
    lines += ["", "## Evidence model (is the chosen lead right?)", "",
              "| weights | right within 5 % wrong | within 10 % wrong |", "|---|---|---|"]
    for label, pairs in evidence_table:
        lines.append(f"| {label} | {best_within(pairs, 0.05)} | {best_within(pairs, 0.10)} |")
    test_pairs = [(e, v) for e, v, _ in test]
    lines += [
        "",
        f"On `{TEST}` with the weights in the code: {sum(v == 'right' for _, v in test_pairs)} / {len(test_pairs)} "
        f"answers right; within 5 % wrong (best threshold in hindsight): {best_within(test_pairs, 0.05)}, within "
        f"10 %: {best_within(test_pairs, 0.10)}.",
        "",
        "Refit on every tuning question (C=0.3), to paste into `bot/answerers/lead.py`:",
        "",
        f"- `WEIGHTS = {refit[0]}`, `BIAS = {refit[1]}`",
        f"- `EVIDENCE_WEIGHTS = {tuple(round(float(w), 3) for w in evidence_model.coef_[0])}`, "
        f"`EVIDENCE_BIAS = {round(float(evidence_model.intercept_[0]), 3)}`",
        "",
    ]
    write_page(args.out, lines)
    sys.stderr.write("\n".join(lines[-4:]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
