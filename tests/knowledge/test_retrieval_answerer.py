"""Customers get the policy text with its source, or a person when the policies do not say."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.answerers.escalation import EscalationAnswerer
from bot.answerers.retrieval import REFUSAL_TEXT, Phrasing, RetrievalAnswerer, grounding_problem
from bot.config import KnowledgeConfig, Settings
from bot.conversation_log import ConversationStore
from bot.errors import AnswererUnavailable, ConfigError
from bot.indexing.knowledge_base import KnowledgeBase
from bot.interfaces import AskContext, RouteDecision
from bot.pipeline import Pipeline

CTX = AskContext(channel="cli", user="test")


class FakeGenerator:
    """Stands in for the domain model's TextGenerator; records the prompt it was given."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.messages: list[dict[str, str]] = []

    def generate(self, messages: list[dict[str, str]], *, max_new_tokens: int | None = None, on_partial=None) -> str:  # noqa: ANN001
        self.messages = messages
        return self.reply


def knowledge_with(kb: KnowledgeBase, **changes: object) -> KnowledgeConfig:
    return kb.config.model_copy(update=changes)


def phrasing(generator: FakeGenerator) -> Phrasing:
    return Phrasing(generator, company_name="Rare Roots", max_new_tokens=160)


def test_answer_quotes_the_policy_and_cites_its_source(sample_kb: KnowledgeBase) -> None:
    draft = RetrievalAnswerer(sample_kb.config, sample_kb).answer("How long does delivery to Canada take?", CTX)
    assert "4-7 business days" in draft.text
    source = draft.sources[0]
    assert (source.title, source.heading) == ("Shipping and delivery", "Shipping zones and delivery times")
    assert source.url == "https://rareroots.example/help/shipping"
    assert source.updated == "2025-09-15"
    assert draft.confidence == pytest.approx(source.score)
    assert draft.confidence >= sample_kb.config.min_score


def test_quote_is_the_policy_text_itself(sample_kb: KnowledgeBase) -> None:
    draft = RetrievalAnswerer(sample_kb.config, sample_kb).answer("Do gift cards expire?", CTX)
    assert "Gift cards never expire." in draft.text
    policy = (Path(__file__).resolve().parents[2] / "knowledge" / "gift-cards.html").read_text()
    assert "Gift cards never expire." in policy


def test_with_the_lead_off_long_chunks_are_cut_to_the_paragraphs_that_answer(sample_kb: KnowledgeBase) -> None:
    config = knowledge_with(sample_kb, answer_max_chars=260, lead_max_chars=0)
    draft = RetrievalAnswerer(config, sample_kb).answer(
        "Is a heat pack required for winter orders to Canada?", CTX
    )
    assert len(draft.text) <= 260
    assert "heat pack" in draft.text


def test_question_the_policies_do_not_cover_is_not_answered(sample_kb: KnowledgeBase) -> None:
    answerer = RetrievalAnswerer(sample_kb.config, sample_kb)
    with pytest.raises(AnswererUnavailable, match=r"did not find an answer in the knowledge base \(best score 0\.\d\d < 0\.35\)"):
        answerer.answer("Who won the football world cup in 1998?", CTX)
    assert answerer.find("Who won the football world cup in 1998?") is None
    assert answerer.find("Can I change my shipping address?") is not None


def test_low_score_escalates_to_a_person_through_the_pipeline(sample_kb: KnowledgeBase, sample_settings: Settings) -> None:
    class RetrievalRouter:
        def decide(self, question: str) -> RouteDecision:
            return RouteDecision(route="retrieval", confidence=0.9, reason="policy question")

    settings = sample_settings
    store = ConversationStore.open(settings.database_url)
    try:
        pipeline = Pipeline.from_settings(settings, store, RetrievalRouter(), {
            "retrieval": RetrievalAnswerer(settings.knowledge, sample_kb), "escalate": EscalationAnswerer(settings.app.company_name)})
        found = pipeline.answer("What does the Grower plan cost per month?")
        assert found.route == "retrieval" and "$9.99 per month" in found.text
        assert found.sources and found.sources[0].path == "pricing.md"
        missing = pipeline.answer("Which football team won in 1998?")
        assert missing.route == "escalate"
        assert "did not find an answer" in missing.fallback_reason
    finally:
        store.close()


def test_generative_answer_is_phrased_by_the_model_from_the_retrieved_text(sample_kb: KnowledgeBase) -> None:
    generator = FakeGenerator("Delivery to Canada takes 4-7 business days and costs $29.95.")
    answerer = RetrievalAnswerer(knowledge_with(sample_kb, answer_mode="generative"), sample_kb, phrasing(generator))
    draft = answerer.answer("How long does delivery to Canada take?", CTX)
    assert draft.text == generator.reply
    assert draft.sources[0].path == "shipping.md"
    system, user = generator.messages
    assert "ONLY" in system["content"] and REFUSAL_TEXT in system["content"]
    # The model sees the units an extractive answer would lead with (a table row with its header).
    assert "Zone: Canada · Where: All provinces · Delivery time: 4-7 business days · Cost: $29.95" in user["content"]
    assert user["content"].endswith("Question: How long does delivery to Canada take?")


@pytest.mark.parametrize(
    "reply",
    [
        "Delivery to Canada takes 2 days and costs $5.",  # invented numbers
        "Canadian parcels travel by dog sled across glaciers, supervised by penguins and wizards.",
        REFUSAL_TEXT,
        "",
    ],
)
def test_generative_answer_beyond_the_policies_is_refused(sample_kb: KnowledgeBase, reply: str) -> None:
    answerer = RetrievalAnswerer(knowledge_with(sample_kb, answer_mode="generative"), sample_kb, phrasing(FakeGenerator(reply)))
    with pytest.raises(AnswererUnavailable, match="couldn't find that in our policies"):
        answerer.answer("How long does delivery to Canada take?", CTX)


def test_generative_mode_without_a_model_is_a_config_error(sample_kb: KnowledgeBase) -> None:
    with pytest.raises(ConfigError, match="answer_mode"):
        RetrievalAnswerer(knowledge_with(sample_kb, answer_mode="generative"), sample_kb, None)


def test_grounding_check_accepts_paraphrase_and_rejects_new_facts() -> None:
    context = ["Pots and tools can be returned within 30 days of delivery, unused."]
    assert grounding_problem("You can return unused pots and tools within 30 days.", context, 0.6) == ""
    assert "numbers" in grounding_problem("You can return pots within 90 days.", context, 0.6)


def test_answers_come_from_the_current_version_after_an_edit(
    docs: Path, make_kb: Callable[..., KnowledgeBase]
) -> None:
    policy = docs / "returns.md"
    policy.write_text("# Returns\n\nPots can be returned within 30 days of delivery.\n", encoding="utf-8")
    kb = make_kb(docs)
    kb.sync()
    answerer = RetrievalAnswerer(kb.config, kb)
    assert "30 days" in answerer.answer("How long do I have to return a pot?", CTX).text
    policy.write_text("# Returns\n\nPots can be returned within 60 days of delivery.\n", encoding="utf-8")
    kb.sync()
    assert "60 days" in answerer.answer("How long do I have to return a pot?", CTX).text
