"""A staff correction answers the next customer at once, and only the customer it fits.

Real SQLite (and Postgres) logs, the real MiniLM, embedded Chroma; the domain LLM is a stand-in
that records its prompts, so each test can tell a verified answer (no generation) from a
grounded one (the entries in the prompt) from a bare one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.answerers.domain_model import DomainAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.errors import AnswererUnavailable, NoEvidence
from bot.glossary import Glossary
from bot.handoff import AnswerGate, load_calibration
from bot.interfaces import Answer, AskContext, Draft
from bot.memory import ExpertMemory
from bot.memory.entries import desired_entries
from bot.registry import adapter_registry
from tests.memory.conftest import RecordingBackend
from tests.servers.postgres import postgres_server

REPO = Path(__file__).resolve().parents[2]
GLOSSARY = Glossary.load(REPO / "data" / "glossary.yaml")
CORRECTED = "Black pitchers are old pitchers dying back: normal. Cut them off and keep the humidity above 60 %."
QUESTION = "My Nepenthes pitchers are turning black, what should I do?"
PARAPHRASE = "My Nepenthes pitchers are turning black. What should I do?"


def log_answer(store: ConversationStore, question: str, route: str = "domain", text: str = "Orchids.") -> int:
    return store.log_turn(question, Answer(text=text, route=route, confidence=0.8, reason="test"),
                          AskContext(channel="slack", user="UCUST", conversation_key=f"C:{question[:20]}"))


def answerer(settings: Settings, memory: ExpertMemory | None) -> tuple[DomainAnswerer, RecordingBackend]:
    backend = RecordingBackend()
    return DomainAnswerer(settings.domain, backend=lambda: backend, registry=adapter_registry(settings), memory=memory,
                          glossary=GLOSSARY), backend


def drafts(draft: Draft) -> list[Draft]:
    """The answer and the alternatives the answer-or-hand-off decision may show instead."""
    return [draft, *draft.alternatives]


def shipped_gate() -> AnswerGate:
    """The thresholds the shipped calibration gives for the default 5 % budget."""
    return AnswerGate.from_records(load_calibration(REPO / "data" / "answer_calibration.json"), 0.05)


@pytest.fixture
def store(tmp_path) -> Iterator[ConversationStore]:  # type: ignore[no-untyped-def]
    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    yield store
    store.close()


def test_a_correction_answers_the_next_paraphrased_question_as_written(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore
) -> None:
    settings = memory_settings()
    memory = make_memory(settings, store)
    domain, backend = answerer(settings, memory)
    try:
        before = [d.text for d in drafts(domain.answer(PARAPHRASE, AskContext()))]
    except NoEvidence:
        before = []
    assert CORRECTED not in before and backend.model.prompts == [], "the model never speaks by default"

    turn = log_answer(store, QUESTION)
    store.add_staff_label(turn, "USTAFF", "incorrect", corrected_answer=CORRECTED, correct_route="domain")
    memory.refresh()
    after = domain.answer(PARAPHRASE, AskContext())
    assert (after.text, after.kind) == (CORRECTED, "verified")
    assert backend.model.prompts == [], "a verified answer is given without generating"


def test_a_label_saved_while_the_bot_runs_is_searchable_within_two_seconds(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore
) -> None:
    memory = make_memory(memory_settings(), store)
    memory.start_watching()
    turn = log_answer(store, QUESTION)
    saved = time.perf_counter()
    store.add_staff_label(turn, "USTAFF", "incorrect", corrected_answer=CORRECTED)
    while time.perf_counter() - saved < 5:
        hits = memory.search(PARAPHRASE, 1)
        if hits and hits[0].entry.answer == CORRECTED:
            break
        time.sleep(0.05)
    assert time.perf_counter() - saved < 2.0


def test_a_newer_label_replaces_the_older_and_a_retraction_removes_the_entry(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore
) -> None:
    memory = make_memory(memory_settings(), store)
    turn = log_answer(store, QUESTION, text="Water it more.")
    store.add_staff_label(turn, "USTAFF", "incorrect", corrected_answer="First try at an answer.")
    store.add_staff_label(turn, "USTAFF", "incorrect", corrected_answer=CORRECTED)
    memory.refresh()
    staff_entries = [e for e in memory.entries() if e.source != "seed"]
    assert [(e.entry_id, e.answer) for e in staff_entries] == [(f"turn:{turn}", CORRECTED)]

    store.retract_label(turn, "USTAFF")
    memory.refresh()
    assert [e for e in memory.entries() if e.source != "seed"] == []
    assert memory.search(PARAPHRASE, 1)[0].entry.answer != CORRECTED
    assert store.labeled_turns() == [], "a withdrawn label leaves the training data too"


def test_an_answer_marked_correct_is_reused_and_policy_corrections_only_when_opted_in(
    memory_settings: Callable[..., Settings], store: ConversationStore
) -> None:
    settings = memory_settings()
    good = log_answer(store, "How much light does a Venus flytrap need?", text="Full sun, at least 4 hours.")
    store.add_staff_label(good, "USTAFF", "correct")
    policy = log_answer(store, "How long does shipping to Canada take?", route="retrieval", text="5 days.")
    store.add_staff_label(policy, "USTAFF", "incorrect", corrected_answer="7-10 business days.")
    entries = desired_entries(settings, store)
    assert entries[f"turn:{good}"].answer == "Full sun, at least 4 hours."
    assert f"turn:{policy}" not in entries
    opted_in = desired_entries(memory_settings(**{"memory.reuse_policy_corrections": True}), store)
    assert opted_in[f"turn:{policy}"].answer == "7-10 business days."


def test_a_near_miss_question_is_held_back_while_a_paraphrase_is_answered(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore
) -> None:
    """"Symptoms of bacterial brown spot" sits close to the root rot and sunburn entries; with the
    shipped thresholds none of its drafts is shown, while the watering paraphrase is."""
    settings = memory_settings(**{"memory.verified_threshold": 0.8})  # even with a lax verified threshold
    domain, backend = answerer(settings, make_memory(settings, store))
    gate = shipped_gate()
    near = domain.answer("What are the symptoms of bacterial brown spot in orchids?", AskContext())
    assert near.kind != "verified"
    assert all(gate.shortfall("domain", d.kind, d.evidence) for d in drafts(near)), [
        (d.kind, d.evidence) for d in drafts(near)]
    paraphrase = domain.answer("My masdevallia dries out so fast, how many times a week do I water it?", AskContext())
    assert paraphrase.kind == "similar" and not gate.shortfall("domain", paraphrase.kind, paraphrase.evidence)
    assert "every two to four days" in paraphrase.text and backend.model.prompts == []


MEALYBUGS = ("How do I get rid of mealybugs on my succulents?",
             "Mealybugs are small white insects that hide in cottony tufts where the leaves meet the stem. "
             "Dab each one with a cotton swab dipped in rubbing alcohol and repeat weekly until none come back.")
PROPAGATE = ("How do I propagate Echeveria from leaves?",
             "Twist a healthy leaf off whole, let it dry for a few days, then lay it on dry gritty soil; "
             "roots and a rosette appear in a few weeks.")


def test_a_customer_describing_what_an_entry_answers_gets_that_answer_framed_as_a_similar_question(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore, tmp_path: Any
) -> None:
    from tests.memory.conftest import write_seed

    settings = memory_settings(**{"training.seed_dataset": str(write_seed(tmp_path / "s.jsonl", [MEALYBUGS, PROPAGATE]))})
    domain, backend = answerer(settings, make_memory(settings, store))
    question = "There are little white cottony bugs on my succulent. How do I kill them?"
    draft = domain.answer(question, AskContext())
    assert draft.kind == "similar" and backend.model.prompts == [], "given as written, nothing generated"
    assert draft.text.startswith(f"Our team answered a similar question, \u201c{MEALYBUGS[0]}\u201d:")
    assert draft.text.endswith(MEALYBUGS[1])
    assert settings.memory.similar_threshold <= draft.confidence < 1.0

    off = memory_settings(**{"training.seed_dataset": settings.training.seed_dataset,
                             "memory.similar_threshold": 1.01})
    off_domain, off_backend = answerer(off, make_memory(off, store))
    assert all(d.kind != "similar" for d in drafts(off_domain.answer(question, AskContext())))
    assert off_backend.model.prompts == []


@pytest.mark.parametrize("question", [
    "How do I get rid of mealybugs on my Monstera?",  # a plant the memory does not know, capitalised
    "how do i propagate a haworthia from leaves?",  # a plant the memory knows, typed in lower case
])
def test_a_similar_answer_is_never_given_for_a_plant_the_entry_does_not_name(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore, tmp_path: Any,
    question: str,
) -> None:
    from tests.memory.conftest import write_seed

    haworthia = ("Why is my Haworthia turning red?", "Too much sun: move it to bright shade.")
    seed = write_seed(tmp_path / "s.jsonl", [MEALYBUGS, PROPAGATE, haworthia])
    settings = memory_settings(**{"training.seed_dataset": str(seed), "memory.similar_threshold": 0.3})
    domain, backend = answerer(settings, make_memory(settings, store))
    try:
        given = drafts(domain.answer(question, AskContext()))
    except NoEvidence:
        given = []
    # Only an entry about the plant asked may answer: never the succulents' or the Echeveria's.
    assert not any(MEALYBUGS[1] in d.text or PROPAGATE[1] in d.text for d in given), [d.text for d in given]
    assert backend.model.prompts == []


def test_an_ungrounded_answer_reports_low_confidence_or_falls_back(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore
) -> None:
    settings = memory_settings(**{"memory.ground_min_similarity": 0.95, "domain.model_answers": "always"})
    domain, backend = answerer(settings, make_memory(settings, store))
    generated = [d for d in drafts(domain.answer("Can I grow a Lithops on a north-facing windowsill?", AskContext()))
                 if d.kind == "generated"]
    assert generated and generated[0].confidence <= settings.memory.ungrounded_max_confidence
    assert backend.model.prompts[0][0]["content"] == settings.domain.system_prompt

    strict = memory_settings(**{"memory.ground_min_similarity": 0.95, "memory.ungrounded": "fallback",
                                "domain.model_answers": "always", "memory.similar_threshold": 1.01})
    strict_domain, strict_backend = answerer(strict, make_memory(strict, store))
    try:
        kinds = [d.kind for d in drafts(strict_domain.answer("Can I grow a Lithops on a north-facing windowsill?",
                                                             AskContext()))]
    except AnswererUnavailable:
        kinds = []
    assert "generated" not in kinds and strict_backend.model.prompts == []


def test_the_model_is_never_asked_when_it_may_not_answer(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore
) -> None:
    """With the default `domain.model_answers = "never"` no question reaches the model, covered or not."""
    settings = memory_settings()
    domain, backend = answerer(settings, make_memory(settings, store))
    for question in ("How often should I water a Masdevallia orchid?", "Why is my Monstera drooping?",
                     "What are the symptoms of bacterial brown spot in orchids?"):
        try:
            kinds = {d.kind for d in drafts(domain.answer(question, AskContext()))}
        except NoEvidence:
            kinds = set()
        assert not kinds & {"grounded", "generated"}
    assert backend.model.prompts == []


def test_two_replicas_sharing_a_postgres_log_both_serve_a_new_correction(
    memory_settings: Callable[..., Settings], make_memory: Any, tmp_path: Any
) -> None:
    with postgres_server() as url:
        store_a, store_b = ConversationStore.open(url), ConversationStore.open(url)
        try:
            replicas = []
            for name, store in (("a", store_a), ("b", store_b)):
                settings = memory_settings(**{"app.state_dir": str(tmp_path / f"replica-{name}")})
                memory = make_memory(settings, store)
                memory.start_watching()
                replicas.append(answerer(settings, memory)[0])
            turn = log_answer(store_a, QUESTION)
            store_a.add_staff_label(turn, "USTAFF", "incorrect", corrected_answer=CORRECTED)
            deadline = time.monotonic() + 5
            answers: list[str] = []
            while time.monotonic() < deadline:
                answers = [replica.answer(PARAPHRASE, AskContext()).text for replica in replicas]
                if answers == [CORRECTED, CORRECTED]:
                    break
                time.sleep(0.2)
            assert answers == [CORRECTED, CORRECTED]
        finally:
            store_a.close()
            store_b.close()


class PublishedKnowledge:
    """The two things the contact guard reads from a knowledge base."""

    generation = 1

    def published_texts(self) -> list[str]:
        return ["Care guides: https://rareroots.example/care/nepenthes", "https://rareroots.example/shipping"]


def test_a_generated_answer_loses_the_sentence_with_an_invented_link_but_keeps_the_shops_own(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore
) -> None:
    from bot.answerers.domain_model import published_contacts

    settings = memory_settings(**{"domain.model_answers": "always", "memory.similar_threshold": 1.01})
    backend = RecordingBackend()
    backend.model.text = ("Cut the black pitchers off at the base. Buy a pot cleaner like 1098 at "
                          "https://www.petcoplantsolutions.com/tips_and_tricks_ today. Our care guide is at "
                          "https://rareroots.example/care/nepenthes for more.")
    domain = DomainAnswerer(settings.domain, backend=lambda: backend, registry=adapter_registry(settings),
                            memory=make_memory(settings, store),
                            published=published_contacts(PublishedKnowledge()))  # type: ignore[arg-type]
    streamed: list[str] = []
    draft = domain.answer("Why do my Nepenthes pitchers go black?", AskContext(), on_partial=streamed.append)
    assert draft.kind in ("grounded", "generated"), "the model's answer, first, so it streams"
    assert streamed and not any("petcoplantsolutions" in text for text in streamed), "not even while streaming"
    assert "petcoplantsolutions" not in draft.text and "1098" not in draft.text
    assert draft.text.startswith("Cut the black pitchers off") and "rareroots.example/care/nepenthes" in draft.text


def test_a_similar_answer_staff_confirm_becomes_the_customers_question_answer_without_the_frame(
    memory_settings: Callable[..., Settings], store: ConversationStore
) -> None:
    from bot.memory.framing import similar_answer_text
    from training.dataset import labeled_examples

    shown = similar_answer_text(MEALYBUGS[0], MEALYBUGS[1])
    turn = log_answer(store, "White cottony bugs on my Echeveria, what now?", text=shown)
    store.add_staff_label(turn, "USTAFF", "correct")
    settings = memory_settings()
    entry = desired_entries(settings, store)[f"turn:{turn}"]
    assert entry.answer == MEALYBUGS[1]
    examples, _ = labeled_examples(settings, store, Counter())
    assert [e.answer for e in examples] == [MEALYBUGS[1]], "the model is never taught to say 'a similar question'"


def test_a_corrected_follow_up_is_remembered_and_learnt_in_its_standalone_form(
    memory_settings: Callable[..., Settings], store: ConversationStore
) -> None:
    from training.dataset import labeled_examples
    from training.router_training import staff_examples

    standalone = "My Venus flytrap traps are turning black. is that normal in winter?"
    turn = store.log_turn("is that normal in winter?",
                          Answer(text="Winter is cold.", route="domain", confidence=0.7, reason="test",
                                 standalone_question=standalone, context_turn_id=None),
                          AskContext(channel="slack", user="UCUST", conversation_key="C:1"))
    store.add_staff_label(turn, "USTAFF", "incorrect", corrected_answer=CORRECTED, correct_route="domain")
    settings = memory_settings()
    assert desired_entries(settings, store)[f"turn:{turn}"].question == standalone
    examples, _ = labeled_examples(settings, store, Counter())
    assert [e.question for e in examples] == [standalone], "'is that normal in winter?' alone teaches nothing"
    assert [e.text for e in staff_examples(store, 2.0)] == [standalone]
    assert store.get_turn(turn).question == "is that normal in winter?", "the log keeps what was typed"


def test_a_memory_rebuilt_by_another_process_is_reopened_by_a_running_one(
    memory_settings: Callable[..., Settings], make_memory: Any, store: ConversationStore
) -> None:
    settings = memory_settings()
    running, erasing = make_memory(settings, store), make_memory(settings, store)
    assert running.search(PARAPHRASE, 1)
    erasing.rebuild()  # what `supportbot privacy forget` does after erasing a person's entries
    hits = running.lookup("How do I repot my Nepenthes?", 1, k_answers=1)
    assert hits.by_question[0].entry.question == "How do I repot a Nepenthes?" and hits.by_answer
