"""Does grounding help the base model on the shop's own domain questions? Prompt variants compared.

The 13 domain questions of `data/testset.jsonl`, answered by the served model (llama.cpp when it
runs, greedy, the served guard) from a fresh memory holding the seed file, one prompt layout at
a time, scored by token F1 against the references. Rows, in one run:

- bare: the served system prompt and the question, no entries;
- system_k1 / system_k2: the nearest 1 or 2 entries (cosine >= memory.ground_min_similarity) in
  the system message, as served (`bot.memory.grounding.grounded_messages`);
- user_k1 / user_k2: the same entries in the user message instead;
- nearest_entry: no model at all, the nearest entry's answer as written (the ceiling reuse gives).

    .venv/bin/python -m bench.grounding_demo

Prints a table (Markdown) to paste into docs/benchmarks.md; takes ~2 minutes on an idle 2-core machine.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bot.answerers.domain_model import build_domain_answerer
from bot.config import load_settings
from bot.conversation_log import ConversationStore
from bot.errors import AnswererUnavailable
from bot.evaluation.metrics import token_f1
from bot.factory import build_expert_memory
from bot.indexing.knowledge_base import build_knowledge_base
from bot.llm.guard import finalize_answer
from bot.memory.grounding import grounded_messages
from bot.model_assets import configure_torch_threads, load_embedder

REPO = Path(__file__).resolve().parents[1]


def user_turn_messages(system_prompt: str, question: str, hits: list) -> list[dict[str, str]]:
    notes = "\n\n".join(f"Expert answer to a similar question ({h.entry.question}):\n{h.entry.answer}" for h in hits)
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": f"{notes}\n\nMy question: {question}"}]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.toml").write_text("", encoding="utf-8")
        settings = load_settings(Path(tmp) / "config.toml", env={}, overrides={
            "app.state_dir": str(Path(tmp) / "var"), "knowledge.dir": str(REPO / "knowledge"),
            "training.seed_dataset": str(REPO / "data" / "seed_domain.jsonl")})
        configure_torch_threads(settings)
        store = ConversationStore.open(settings.database_url)
        embedder = load_embedder(settings)
        knowledge = build_knowledge_base(settings, embedder)
        knowledge.sync()
        memory = build_expert_memory(settings, store, embedder, knowledge)
        answerer = build_domain_answerer(settings, memory=memory)
        model = answerer._ensure_loaded()
        params = answerer.params()
        system = settings.domain.system_prompt
        items = [json.loads(line) for line in (REPO / "data" / "testset.jsonl").read_text().splitlines()
                 if line.strip() and json.loads(line)["expected_route"] == "domain"]
        variants = {
            "bare": lambda q, h: grounded_messages(system, q, []),
            "system_k1": lambda q, h: grounded_messages(system, q, h[:1]),
            "system_k2": lambda q, h: grounded_messages(system, q, h[:2]),
            "user_k1": lambda q, h: user_turn_messages(system, q, h[:1]),
            "user_k2": lambda q, h: user_turn_messages(system, q, h[:2]),
        }
        scores: dict[str, list[float]] = {name: [] for name in [*variants, "nearest_entry"]}
        for item in items:
            hits = [h for h in memory.search(item["question"], 2) if h.similarity >= settings.memory.ground_min_similarity]
            scores["nearest_entry"].append(token_f1(hits[0].entry.answer, item["reference"]) if hits else 0.0)
            for name, build in variants.items():
                try:
                    text = finalize_answer(model.generate(build(item["question"], hits), params, None, None).text,
                                           answerer.policy)
                except AnswererUnavailable:
                    text = ""  # degenerate: scores 0, as in eval
                scores[name].append(token_f1(text, item["reference"]))
        memory.close()
        knowledge.close()
        store.close()
        answerer.close()
    print(f"| prompt | token F1 ({len(items)} demo domain questions) |\n|---|---|")
    for name, values in scores.items():
        print(f"| {name} | {sum(values) / len(values):.3f} |")


if __name__ == "__main__":
    main()
