"""The Markdown report: the verdicts a person decides on first (resolution, wrong answers, each wrong
answer), then the secondary figures, then the failing questions."""

from __future__ import annotations

from typing import Any

from bot.config import ROUTES

MAX_LISTED_FAILURES = 40


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.0f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_markdown(report: dict[str, Any], charts: dict[str, str], comparison: dict[str, Any] | None) -> str:
    routing, quality, escalation = report["routing"], report["quality"], report["escalation"]
    latency, counts = report["latency_ms"], report["counts"]
    versions = report["versions"]
    out = [
        "# Evaluation report",
        "",
        f"- test set: `{report['testset']}` ({counts['items']} questions"
        + (f", {counts['skipped_lines']} malformed line(s) skipped" if counts["skipped_lines"] else "")
        + ")",
        f"- run: {report['created']}, `{report['command']}`",
        f"- model version(s): {', '.join(versions['model']) or '–'}; router version(s): "
        f"{', '.join(versions['router']) or '–'}",
        "",
        *render_judged(report.get("judged"), report["results"]),
        "## Other figures",
        "",
        "Token F1 and ROUGE-L give a wordy wrong answer partial credit: read them after the verdicts above.",
        "",
        *_table(
            ["metric", "value"],
            [
                ["route accuracy", routing["accuracy"]],
                ["route macro-F1", routing["macro_f1"]],
                ["escalation rate", escalation["rate"]],
                ["missed escalations (needed a person, got the bot)", escalation["missed"]],
                ["unneeded escalations", escalation["unneeded"]],
                [f"degenerate answers (repeated {report.get('degenerate_ngram', 4)}-word sequences > "
                 f"{report['degenerate_threshold']:.0%})",
                 report["degenerate"]["count"]],
                ["token F1 vs reference", quality["all"]["token_f1"]],
                ["ROUGE-L vs reference", quality["all"]["rouge_l"]],
                ["citation hit rate", quality["all"]["citation_hit_rate"]],
                ["key fact in the first sentence", quality["all"].get("key_fact_rate")],
                ["latency p50 / p95 (ms)", f"{_ms(latency['all']['p50'])} / {_ms(latency['all']['p95'])}"],
            ],
        ),
        "",
    ]
    if comparison is not None:
        out += render_comparison(comparison, charts)
    out += [
        "## Routing",
        "",
        "Rows: the route the test set expects; columns: the route that answered.",
        "",
        *_table(
            ["expected \\ answered", *ROUTES],
            [[exp, *[routing["confusion"][exp][act] for act in ROUTES]] for exp in ROUTES],
        ),
        "",
        *_table(
            ["route", "precision", "recall", "F1", "questions"],
            [[r, *(routing["per_route"][r][k] for k in ("precision", "recall", "f1", "support"))] for r in ROUTES],
        ),
        "",
    ]
    if "confusion" in charts:
        out += [f"![confusion matrix]({charts['confusion']})", ""]
    out += [
        "## Answer quality by expected route",
        "",
        "Scored against the reference answers; a degenerate answer scores 0. Citation hit: the "
        "answer cites one of the question's expected source files. Key fact: the answer's first "
        "sentence states the question's `key_fact` (a price, a duration, \"do not ship\").",
        "",
        *_table(
            ["route", "questions", "with reference", "token F1", "ROUGE-L", "with expected source",
             "citation hit rate", "key fact first", "degenerate"],
            [
                [r, *(quality[r].get(k) for k in ("items", "with_reference", "token_f1", "rouge_l",
                                                   "with_expected_source", "citation_hit_rate", "key_fact_rate",
                                                   "degenerate"))]
                for r in (*ROUTES, "all")
            ],
        ),
        "",
    ]
    if "quality" in charts:
        out += [f"![answer quality]({charts['quality']})", ""]
    kinds = report.get("answer_kinds") or {}
    if kinds:
        out += [
            "## How the answers were made",
            "",
            "By the route that answered. A domain answer is *verified* (an expert memory entry as "
            "written), *similar* (an entry's answer to a similar question, as written, framed as such), "
            "*grounded* (generated with expert entries in the prompt) or *generated* (the "
            "model alone).",
            "",
            *_table(
                ["route", "kind", "answers", "with reference", "token F1", "ROUGE-L", "degenerate"],
                [
                    [route, kind, *(q.get(k) for k in ("items", "with_reference", "token_f1", "rouge_l", "degenerate"))]
                    for route, by_kind in kinds.items()
                    for kind, q in by_kind.items()
                ],
            ),
            "",
        ]
    out += render_conversations(report.get("conversations"))
    out += [
        "## Latency by answering route",
        "",
        "Wall time of `Pipeline.answer` per question (route, answer, log), in milliseconds.",
        "",
        *_table(
            ["route", "answers", "p50", "p95", "mean"],
            [[r, latency[r]["count"], *(_ms(latency[r][k]) for k in ("p50", "p95", "mean"))] for r in (*ROUTES, "all")],
        ),
        "",
    ]
    if "latency" in charts:
        out += [f"![latency]({charts['latency']})", ""]
    out += render_failures(report["results"])
    if report["skipped"]:
        out += ["## Skipped lines", "", *[f"- line {p['line']}: {p['message']}" for p in report["skipped"]], ""]
    return "\n".join(out)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _tally_row(name: str, t: dict[str, Any]) -> list[Any]:
    return [name, t["items"], t["should_answer"], t["right_answers"], t["wrong"], t["handed_off"],
            _pct(t["resolution_rate"]), _pct(t["wrong_rate"])]


TALLY_HEADER = ["", "questions", "should answer", "right answers", "wrong", "handed off", "resolution rate",
                "wrong-answer rate"]


def render_judged(judged: dict[str, Any] | None, results: list[dict[str, Any]]) -> list[str]:
    """Resolution and wrong-answer rates first, then every wrong answer, as a support lead reads them."""
    if not judged:
        return []
    overall = judged["all"]
    out = [
        "## Right, wrong or handed off",
        "",
        "*Resolution rate*: right answers among the questions a bot should answer (all but expected "
        "escalations). *Wrong-answer rate*: wrong answers among the answers given; a bot answer to a "
        "question that needed a person is a wrong answer. An answer is right when it states one of the "
        "item's `accept` phrases and none of its `reject` phrases (docs/evaluation.md).",
        "",
        *_table(TALLY_HEADER, [
            _tally_row("all", overall),
            *[_tally_row(f"expected {route}", t) for route, t in judged["by_expected_route"].items()],
        ]),
        "",
    ]
    if overall["answerable"] != overall["should_answer"]:
        out += [f"Of the {overall['should_answer']} questions a bot should answer, {overall['answerable']} are "
                "answered by something published or written by staff (the rest are `answerable: false`, where a "
                f"hand-off is the honest outcome): resolution among those {_pct(overall['resolution_answerable'])}.",
                ""]
    if overall["unjudged"]:
        out += [f"{overall['unjudged']} answer(s) are unjudged: their items have no `accept`/`reject` keys.", ""]
    if judged["by_kind"]:
        out += [
            "By the answerer that answered (route / kind):",
            "",
            *_table(["answered by", "answers", "right", "wrong", "unjudged", "wrong-answer rate"], [
                [name, t["answered"], t["right"], t["wrong"], t["unjudged"], _pct(t["wrong_rate"])]
                for name, t in judged["by_kind"].items()
            ]),
            "",
        ]
    wrong = [r for r in results if r.get("verdict") == "wrong"]
    out += ["### Wrong answers", ""]
    if not wrong:
        out += ["None.", ""]
    else:
        out += _table(["id", "question", "answered by", "why", "answer"], [
            [r["id"], _short(r["question"], 80), f"{r['route']}/{r.get('kind') or '-'}", r.get("why", ""),
             _short(r["answer"], 160)]
            for r in wrong
        ]) + [""]
    handed = [r for r in results if r.get("verdict") == "handed_off"]
    if handed:
        out += ["### Handed off (not resolved)", "", *_table(["id", "question", "why"], [
            [r["id"], _short(r["question"], 80), _short(r.get("fallback_reason") or r.get("why", ""), 120)]
            for r in handed[:MAX_LISTED_FAILURES]
        ]), ""]
    return out


def render_conversations(conv: dict[str, Any] | None) -> list[str]:
    """First turns, and follow-ups with and without their conversation, from one run."""
    if not conv:
        return []
    f = conv["follow_ups"]
    rows = [
        ("first turns", conv["first_turns"]),
        ("follow-ups, with the conversation (as served)", f["with_context"]),
        ("follow-ups, each on its own", f["alone"]),
        ("… that depend on earlier turns, with the conversation", f["depends_with_context"]),
        ("… that depend on earlier turns, on their own", f["depends_alone"]),
        ("… that stand alone (topic changes), with the conversation", f["standalone_with_context"]),
        ("… that stand alone (topic changes), on their own", f["standalone_alone"]),
    ]
    return [
        "## Conversations",
        "",
        f"{conv['conversations']} conversations. Every follow-up was answered in its conversation and again "
        "on its own, in this run; *read with context*: how many were routed and answered together with the "
        "earlier questions.",
        "",
        *_table(
            ["turns", "questions", "resolution rate", "wrong-answer rate", "right", "wrong", "handed off",
             "same answer as the turn before", "route accuracy", "token F1", "read with context"],
            [[name, r["items"], _pct(r.get("resolution_rate")), _pct(r.get("wrong_rate")), r.get("right"),
              r.get("wrong"), r.get("handed_off"), r.get("repeated_previous"), r["route_accuracy"], r["token_f1"],
              r["context_used"]] for name, r in rows],
        ),
        "",
    ]


def render_comparison(comparison: dict[str, Any], charts: dict[str, str]) -> list[str]:
    old_v, new_v = comparison["old_versions"], comparison["new_versions"]
    out = [
        f"## Changes since {comparison['old_label']}",
        "",
        f"Old run {comparison['old_created']} (model {', '.join(old_v.get('model', [])) or '–'}, router "
        f"{', '.join(old_v.get('router', [])) or '–'}) → this run (model "
        f"{', '.join(new_v.get('model', [])) or '–'}, router {', '.join(new_v.get('router', [])) or '–'}).",
        "",
        *_table(
            ["metric", "old", "new", "change", ""],
            [_comparison_row(m) for m in comparison["metrics"]],
        ),
        "",
    ]
    if comparison["changed_items"]:
        out += ["Questions whose outcome changed:", ""]
        out += [f"- {_short(c['question'])}: {'; '.join(c['changes'])}" for c in comparison["changed_items"]]
        out.append("")
    if comparison["only_in_old"] or comparison["only_in_new"]:
        out += [f"{comparison['only_in_new']} question(s) are new in this test set, "
                f"{comparison['only_in_old']} were only in the old one.", ""]
    if "comparison" in charts:
        out += [f"![changes]({charts['comparison']})", ""]
    return out


def _comparison_row(m: dict[str, Any]) -> list[Any]:
    delta = m["delta"]
    if "latency" in m["metric"]:
        shown = [_ms(m["old"]), _ms(m["new"]), "–" if delta is None else f"{delta:+.1f}"]
    elif isinstance(delta, int):
        shown = [m["old"], m["new"], f"{delta:+d}"]
    else:
        shown = [m["old"], m["new"], "–" if delta is None else f"{delta:+.3f}"]
    return [m["metric"], *shown, m["verdict"]]


def render_failures(results: list[dict[str, Any]]) -> list[str]:
    failing = [
        r for r in results
        if not r["route_correct"] or r["degenerate"] or r.get("citation_hit") is False
    ]
    if not failing:
        return ["## Failing questions", "", "None: every question went to its route, cited its "
                "source and gave a non-degenerate answer.", ""]
    rows = []
    for r in failing[:MAX_LISTED_FAILURES]:
        problems = []
        if not r["route_correct"]:
            problems.append(f"routed {r['route']}, expected {r['expected_route']}")
        if r["degenerate"]:
            problems.append(f"degenerate ({r['degenerate_ratio']:.0%} repeated)")
        if r.get("citation_hit") is False:
            problems.append(f"did not cite {', '.join(r['expected_sources'])}")
        rows.append([r["id"], _short(r["question"], 70), "; ".join(problems), _short(r["answer"], 80)])
    out = ["## Failing questions", "", *_table(["id", "question", "problem", "answer"], rows), ""]
    if len(failing) > MAX_LISTED_FAILURES:
        out += [f"… and {len(failing) - MAX_LISTED_FAILURES} more in report.json.", ""]
    return out
