"""Hybrid search finds policies by meaning and by exact tokens, and never shows a half-updated document."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.indexing.knowledge_base import KnowledgeBase
from bot.indexing.lexical import tokenize


@pytest.mark.parametrize(
    ("query", "path", "heading"),
    [
        ("How long does shipping to Canada take?", "shipping.md", "Shipping zones and delivery times"),
        ("Can I return a plant that died?", "returns.md", "What you can return"),
        ("How much is the Collector plan per year?", "pricing.md", "Greenhouse Club plans"),
        ("I forgot my password", "account.md", "Signing in and passwords"),
        ("do gift cards expire", "gift-cards.html", "Expiry and refunds"),
        ("What is the minimum order for wholesale accounts?", "wholesale-terms.pdf", "Page 1"),
    ],
)
def test_customer_questions_find_the_right_policy_section(
    sample_kb: KnowledgeBase, query: str, path: str, heading: str
) -> None:
    hits = sample_kb.search(query, k=3)
    assert (hits[0].source.path, hits[0].source.heading) == (path, heading)
    assert hits[0].score >= sample_kb.config.min_score


@pytest.mark.parametrize("token", ["RR-ORC-1042", "RR-HEAT-72", "RR-SUC-3101"])
def test_exact_skus_are_found_and_score_as_answerable(sample_kb: KnowledgeBase, token: str) -> None:
    hit = sample_kb.search(token, k=1)[0]
    assert token in hit.text
    assert hit.lexical_score > hit.dense_score
    assert hit.score >= sample_kb.config.min_score


def test_hybrid_ranks_an_exact_code_above_dense_only(sample_kb: KnowledgeBase) -> None:
    query = "price of RR-CAR-2305"
    dense_only = [h.chunk_id for h in sample_kb.search(query, k=5, lexical_weight=0.0)]
    hybrid = sample_kb.search(query, k=5)
    assert "RR-CAR-2305" in hybrid[0].text
    assert dense_only.index(hybrid[0].chunk_id) > 0 if hybrid[0].chunk_id in dense_only else True


def test_scores_are_relevance_between_zero_and_one_and_sorted(sample_kb: KnowledgeBase) -> None:
    hits = sample_kb.search("When is the heat pack required for live plants?", k=6)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= h.score <= 1.0 and 0.0 <= h.dense_score <= 1.0 and 0.0 <= h.lexical_score <= 1.0 for h in hits)


def test_unrelated_question_scores_below_the_threshold(sample_kb: KnowledgeBase) -> None:
    hits = sample_kb.search("What is the capital of France?")
    assert hits and hits[0].score < sample_kb.config.min_score


def test_empty_query_returns_nothing(sample_kb: KnowledgeBase) -> None:
    assert sample_kb.search("   ") == []


def test_a_batch_search_finds_what_each_search_finds(sample_kb: KnowledgeBase) -> None:
    """Router training reads its knowledge signals for hundreds of questions in one batch; the
    router serving them searches one at a time, so the two must agree."""
    questions = ["How much is a heat pack?", "Do you ship to the UK?", "  ", "RR-ORC-1042",
                 "Can I return a pot I don't like?", "What is the capital of France?"]
    one_by_one = [sample_kb.search(q, k=3) for q in questions]
    sample_kb.searcher.clear_caches()
    batch = sample_kb.search_many(questions, k=3)
    assert [[h.chunk_id for h in hits] for hits in batch] == [[h.chunk_id for h in hits] for hits in one_by_one]
    assert [h.score for hits in batch for h in hits] == pytest.approx(
        [h.score for hits in one_by_one for h in hits], abs=1e-3)
    assert batch[2] == []


def test_repeated_search_is_served_from_the_cache(sample_kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    first = sample_kb.search("heat pack price for winter orders")
    calls: list[Any] = []
    original = sample_kb.searcher.embed_query
    monkeypatch.setattr(sample_kb.searcher, "embed_query", lambda text: calls.append(text) or original(text))
    assert sample_kb.search("heat pack price for winter orders") == first
    assert calls == []
    sample_kb.search("heat pack price for summer orders")
    assert calls == ["heat pack price for summer orders"]  # the spy sees what the cache does not answer


def test_tokenizer_keeps_codes_whole_and_in_parts() -> None:
    tokens = tokenize("Order RR-ORC-1042 orchids")
    assert "rr-orc-1042" in tokens and "orc" in tokens and "1042" in tokens
    assert "orchid" in tokens  # plural folded


def _versioned_doc(version: str) -> str:
    sections = [f"## Section {i}\n\nPolicy clause {i} of edition {version}: plants ship on weekdays." for i in range(5)]
    return "# Edition policy\n\n" + "\n\n".join(sections) + "\n"


def test_search_during_reindex_sees_one_version_never_a_mix_or_nothing(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    path = docs / "edition.md"
    path.write_text(_versioned_doc("A"), encoding="utf-8")
    kb = make_kb(docs)
    kb.sync()
    problems: list[str] = []
    searches = 0
    stop = threading.Event()

    def search_forever() -> None:
        nonlocal searches
        while not stop.is_set():
            hits = kb.search(f"policy clause edition plants ship on weekdays {searches}", k=5)
            searches += 1
            editions = {h.text.split("edition ")[1][0] for h in hits}
            if len(hits) != 5:
                problems.append(f"{len(hits)} hits")
            if len(editions) != 1:
                problems.append(f"mixed editions {editions}")
            if any(h.dense_score <= 0.0 for h in hits):
                problems.append("a hit lost its vector (read while its version was being deleted)")

    reader = threading.Thread(target=search_forever)
    reader.start()
    try:
        for edition in "BCDEFG":
            path.write_text(_versioned_doc(edition), encoding="utf-8")
            kb.sync_paths([path])
    finally:
        stop.set()
        reader.join()
    assert searches > 0
    assert problems == []
    assert {h.text.split("edition ")[1][0] for h in kb.search("policy clause", k=5)} == {"G"}


def test_search_leaves_the_process_torch_threads_as_they_were(sample_kb: KnowledgeBase) -> None:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sample_kb.search("a question that is not cached yet about orchid shipping")
        assert torch.get_num_threads() == 2  # indexing and the LLM keep all their threads
    finally:
        torch.set_num_threads(before)


def test_the_router_and_the_answerer_searching_one_question_embed_it_once(
    sample_kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.query_encoder import QueryEncoder

    calls: list[list[str]] = []
    original = QueryEncoder.encode

    def counting(self: QueryEncoder, texts: list[str]) -> Any:
        calls.append(texts)
        return original(self, texts)

    monkeypatch.setattr(QueryEncoder, "encode", counting)
    question = "Do you ship orchids to Alaska in winter?"
    router_hits = sample_kb.search(question, k=2)  # the router's KB signals
    answer_hits = sample_kb.search(question, k=4)  # the retrieval answerer
    assert calls == [[question]]
    assert [h.chunk_id for h in answer_hits[:2]] == [h.chunk_id for h in router_hits]
