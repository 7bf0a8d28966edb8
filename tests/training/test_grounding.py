"""The adapter trains on the prompt it is served: the question with its retrieved expert entries.

Real MiniLM, real SQLite log, embedded Chroma; the domain LLM is the recording stand-in, so the
served prompt can be compared with the training prompt message for message.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.answerers.domain_model import DomainAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.factory import expert_memory_for
from bot.indexing.embedding import embed
from bot.interfaces import AskContext
from bot.memory.grounding import GROUNDING_HEADER, Note
from bot.registry import adapter_registry
from tests.memory.conftest import SEED, RecordingBackend, write_seed
from tests.training.conftest import add_labeled_turn
from training.dataset import Example, export_dataset, read_jsonl_examples
from training.grounding import Grounder, memory_notes, question_embedder

MASDEVALLIA = SEED[0][0]
STAFF_ANSWER = "Water a Masdevallia every two days in summer and every four in winter, always with rainwater."


def grounder(settings: Settings, store: ConversationStore | None, embedder: Any, share: float) -> Grounder:
    g = Grounder.from_settings(settings, memory_notes(settings, store), question_embedder(embedder))
    g.answer_share = share
    return g


def notes_of(example: Example) -> set[tuple[str, str]]:
    return {(n.question, n.answer) for n in example.grounding}


def test_a_training_example_never_sees_its_own_entry_and_sees_another_answer_only_in_the_chosen_share(
    settings_factory: Callable[..., Settings], store: ConversationStore, embedder: Any, tmp_path: Path
) -> None:
    seed = write_seed(tmp_path / "seed.jsonl", SEED)
    settings = settings_factory(**{"training.seed_dataset": str(seed), "memory.ground_min_similarity": 0.0})
    # A staff correction of the seed's Masdevallia question: the seed's answer is "another source".
    add_labeled_turn(store, MASDEVALLIA, "Weekly.", verdict="incorrect", corrected=STAFF_ANSWER)
    examples = [Example(q, a, "seed") for q, a in SEED[1:]] + [Example(MASDEVALLIA, STAFF_ANSWER, "staff_corrected")]

    always = grounder(settings, store, embedder, share=1.0).ground(examples)
    never = grounder(settings, store, embedder, share=0.0).ground(examples)

    for grounded in (always, never):
        for ex in grounded:
            assert (ex.question, ex.answer) not in notes_of(ex)  # never its own entry
            assert 0 < len(ex.grounding) <= settings.memory.ground_k
    corrected_always, corrected_never = always[-1], never[-1]
    assert (MASDEVALLIA, SEED[0][1]) in notes_of(corrected_always)  # the seed's answer to the same question
    assert all(n.answer != SEED[0][1] for n in corrected_never.grounding)  # distractors only
    # The seed examples have no other entry answering them: the same distractors either way.
    assert [notes_of(e) for e in always[:-1]] == [notes_of(e) for e in never[:-1]]


def test_a_held_out_answer_never_appears_in_a_training_prompt(
    settings_factory: Callable[..., Settings], embedder: Any, tmp_path: Path
) -> None:
    pairs = [*SEED, *[(f"How often should I water a {name}?", f"Water a {name} when the top centimetre is dry.")
                      for name in ("Dendrobium", "Oncidium", "Cattleya", "Vanda", "Miltonia", "Zygopetalum")]]
    seed = write_seed(tmp_path / "seed.jsonl", pairs)
    settings = settings_factory(**{"training.seed_dataset": str(seed), "training.eval_fraction": 0.3,
                                   "memory.ground_min_similarity": 0.0})

    result = export_dataset(settings, None, tmp_path / "out", grounder=grounder(settings, None, embedder, 0.8))

    assert result.eval and result.train
    held_answers = {ex.answer for ex in result.eval}
    for ex in result.train:
        assert ex.grounding, ex.question
        assert not held_answers & {n.answer for n in ex.grounding}
    for ex in result.eval:  # scored on the served prompt, without its own entry
        assert ex.grounding and ex.answer not in {n.answer for n in ex.grounding}
    # The files are what is trained on: the entries survive the round trip.
    assert read_jsonl_examples(result.train_path) == result.train
    assert "grounding (the served prompt" in (tmp_path / "out" / "report.md").read_text()


def test_the_training_prompt_is_the_prompt_the_domain_answerer_serves(
    settings_factory: Callable[..., Settings], store: ConversationStore, embedder: Any, tmp_path: Path,
) -> None:
    seed = write_seed(tmp_path / "seed.jsonl", SEED)
    # The model answers (grounded) only where it may; no similar answer comes before it here.
    settings = settings_factory(**{"training.seed_dataset": str(seed), "domain.model_answers": "always",
                                   "memory.similar_threshold": 1.01})
    memory = expert_memory_for(settings, store, lambda texts: embed(embedder, list(texts)),
                               lambda text: embed(embedder, [text])[0], "test-minilm")
    memory.refresh(force=True)
    backend = RecordingBackend()
    domain = DomainAnswerer(settings.domain, backend=lambda: backend, registry=adapter_registry(settings), memory=memory)
    question = "How often should I water my Masdevallia in winter?"  # not an entry's question

    draft = domain.answer(question, AskContext())

    assert draft.kind == "grounded"
    served = backend.model.prompts[0]
    [example] = grounder(settings, store, embedder, share=1.0).ground([Example(question, "(reference)", "seed")])
    trained = example.messages(settings.domain.system_prompt, settings.memory.ground_answer_chars)
    assert trained[:-1] == served
    assert trained[-1] == {"role": "assistant", "content": "(reference)"}
    assert GROUNDING_HEADER in served[0]["content"] and MASDEVALLIA in served[0]["content"]


def test_entries_that_do_not_fit_are_left_out_farthest_first(tiny_llm_dir: Path) -> None:
    from transformers import AutoTokenizer

    from training.finetune import tokenize_example

    tok = AutoTokenizer.from_pretrained(str(tiny_llm_dir))
    near = Note("How often should I water a Masdevallia?", "Every two to four days.")
    far = Note("How do I repot a Nepenthes?", " ".join(["Use long-fibre sphagnum and perlite."] * 20))
    example = Example(MASDEVALLIA, "Keep it moist.", "seed", grounding=(near, far))

    fitted = tokenize_example(tok, example, "You are the plant expert.", max_length=160, answer_chars=2000)

    assert fitted is not None
    prompt = tok.decode(fitted.input_ids)
    assert "Every two to four days." in prompt and "sphagnum" not in prompt
    assert tok.decode([t for t in fitted.labels if t != -100]).startswith("Keep it moist.")
