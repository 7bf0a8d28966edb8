"""Promoting a new adapter while customers are asking: every request is answered, none fails."""

from __future__ import annotations

import threading

from bot.answerers.domain_model import build_domain_answerer
from bot.interfaces import AskContext

QUESTION = "How much light does a Phalaenopsis need?"


def _answer_alone(settings, promote, adapter_dir) -> str:
    """The answer one adapter gives with nothing else going on."""
    promote(settings, adapter_dir)
    answerer = build_domain_answerer(settings)
    try:
        return answerer.answer(QUESTION, AskContext()).text
    finally:
        answerer.close()


def test_adapter_swap_under_concurrent_requests_fails_none(domain_settings, tiny_adapters, promote):
    expected = {
        name: _answer_alone(domain_settings(domain__max_new_tokens=12), promote, tiny_adapters[name])
        for name in ("a", "b")
    }
    assert expected["a"] != expected["b"]
    settings = domain_settings(domain__max_new_tokens=12)
    first = promote(settings, tiny_adapters["a"])
    answerer = build_domain_answerer(settings)
    answerer.warm_up()
    served: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    answered = threading.Semaphore(0)
    stop = threading.Event()

    def customer() -> None:
        while not stop.is_set():
            try:
                draft = answerer.answer(QUESTION, AskContext())
                served.append((draft.model_version, draft.text))
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)
                stop.set()
            finally:
                answered.release()

    customers = [threading.Thread(target=customer) for _ in range(3)]
    try:
        for t in customers:
            t.start()
        for _ in range(2):  # requests are flowing on the first adapter
            assert answered.acquire(timeout=120)
        second = promote(settings, tiny_adapters["b"])
        assert answerer.refresh_adapter(wait=True)
        assert answerer.current_version == second
        for _ in range(4):  # and keep flowing, now on the second
            assert answered.acquire(timeout=120)
    finally:
        stop.set()
        for t in customers:
            t.join()
        answerer.close()
    assert not errors
    versions = [v for v, _ in served]
    assert versions[0] == first and versions[-1] == second
    switched = versions.index(second)
    assert set(versions[switched:]) == {second}  # never flips back
    # Each answer is exactly what its adapter gives alone: no request mixed two models.
    assert all(text == expected["a" if v == first else "b"] for v, text in served)


def test_rollback_to_no_adapter_swaps_back_to_the_base(domain_settings, tiny_adapters, promote):
    from bot.registry import ArtifactRegistry

    settings = domain_settings()
    promote(settings, tiny_adapters["a"])
    answerer = build_domain_answerer(settings)
    try:
        answerer.warm_up()
        ArtifactRegistry(settings.state_dir / "adapters").rollback()
        assert answerer.refresh_adapter(wait=True)
        assert answerer.answer(QUESTION, AskContext()).model_version == "base"
    finally:
        answerer.close()


def test_broken_new_adapter_keeps_the_current_one_serving(domain_settings, tiny_adapters, promote, tmp_path):
    settings = domain_settings()
    good = promote(settings, tiny_adapters["a"])
    answerer = build_domain_answerer(settings)
    try:
        answerer.warm_up()
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "adapter_config.json").write_text("{not json", encoding="utf-8")
        promote(settings, broken)
        answerer.refresh_adapter(wait=True)
        draft = answerer.answer(QUESTION, AskContext())
    finally:
        answerer.close()
    assert draft.model_version == good
