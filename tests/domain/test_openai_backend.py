"""The server backend against a real local OpenAI-compatible HTTP server, and the pipeline's fallback."""

from __future__ import annotations

import socket

import pytest

from bot.answerers.domain_model import DomainAnswerer
from bot.answerers.escalation import EscalationAnswerer
from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.errors import AnswererUnavailable, ConfigError
from bot.interfaces import AskContext, RouteDecision
from bot.llm.openai_server import OpenAIServerBackend
from bot.llm.selection import select_backend
from bot.pipeline import Pipeline
from bot.registry import adapter_registry

QUESTION = "How often should I water a Masdevallia orchid?"


def _answerer(settings_factory, url: str, **overrides) -> tuple[DomainAnswerer, Settings]:
    values = {
        "domain.model_answers": "always",  # the server's answers are what these tests are about
        "domain.backend": "openai",
        "domain.server.url": url,
        "domain.server.timeout_s": 2.0,
        "domain.server.retries": 2,
    }
    values.update(overrides)
    settings = settings_factory(**values)
    backend = OpenAIServerBackend(settings, backoff_s=0.01)
    return DomainAnswerer(settings.domain, backend=lambda: backend, registry=adapter_registry(settings)), settings


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_server_answers_with_the_base_model_it_lists(settings_factory, fake_openai_server):
    answerer, settings = _answerer(settings_factory, fake_openai_server.url)
    draft = answerer.answer(QUESTION, AskContext())
    answerer.close()
    assert draft.text == fake_openai_server.state.reply
    assert draft.model_version == "base"
    request = fake_openai_server.state.requests[-1]
    assert request["model"] == "smollm2-base"
    assert request["messages"][0]["role"] == "system" and request["messages"][1]["content"] == QUESTION


def test_promoted_adapter_is_requested_by_its_version_name(settings_factory, fake_openai_server, tiny_adapters, promote):
    answerer, settings = _answerer(settings_factory, fake_openai_server.url)
    version = promote(settings, tiny_adapters["a"])
    fake_openai_server.state.models.append(version)
    partials: list[str] = []
    draft = answerer.answer(QUESTION, AskContext(), on_partial=partials.append)
    answerer.close()
    assert draft.model_version == version
    assert fake_openai_server.state.requests[-1]["model"] == version
    assert fake_openai_server.state.requests[-1]["stream"] is True
    assert len(partials) >= 3 and partials[-1] == draft.text


def test_adapter_the_server_does_not_serve_keeps_the_current_model(settings_factory, fake_openai_server, tiny_adapters, promote):
    answerer, settings = _answerer(settings_factory, fake_openai_server.url)
    assert answerer.answer(QUESTION, AskContext()).model_version == "base"
    promote(settings, tiny_adapters["a"])  # promoted, but nobody loaded it into the server
    answerer.refresh_adapter(wait=True)
    draft = answerer.answer(QUESTION, AskContext())
    answerer.close()
    assert draft.model_version == "base"
    assert fake_openai_server.state.requests[-1]["model"] == "smollm2-base"


def test_server_errors_are_retried_then_answered(settings_factory, fake_openai_server):
    fake_openai_server.state.fail_next = 2
    answerer, settings = _answerer(settings_factory, fake_openai_server.url, **{"domain.server.model": "smollm2-base"})
    draft = answerer.answer(QUESTION, AskContext())
    answerer.close()
    assert draft.text == fake_openai_server.state.reply
    assert len(fake_openai_server.state.requests) == 3


def test_persistent_500_gives_a_clear_error_after_the_retries(settings_factory, fake_openai_server):
    fake_openai_server.state.fail_next = 100
    answerer, settings = _answerer(settings_factory, fake_openai_server.url, **{"domain.server.model": "smollm2-base"})
    with pytest.raises(AnswererUnavailable, match=r"unavailable after 3 attempts: HTTP 500"):
        answerer.answer(QUESTION, AskContext())
    answerer.close()
    assert len(fake_openai_server.state.requests) == 3


def test_client_error_is_not_retried(settings_factory, fake_openai_server):
    fake_openai_server.state.fail_next = 1
    fake_openai_server.state.fail_status = 400
    answerer, settings = _answerer(settings_factory, fake_openai_server.url, **{"domain.server.model": "smollm2-base"})
    with pytest.raises(AnswererUnavailable, match="refused the request: HTTP 400"):
        answerer.answer(QUESTION, AskContext())
    answerer.close()
    assert len(fake_openai_server.state.requests) == 1


def test_slow_server_times_out(settings_factory, fake_openai_server):
    fake_openai_server.state.delay_s = 1.5
    answerer, settings = _answerer(
        settings_factory,
        fake_openai_server.url,
        **{"domain.server.model": "smollm2-base", "domain.server.timeout_s": 0.3, "domain.server.retries": 1},
    )
    with pytest.raises(AnswererUnavailable, match="timed out"):
        answerer.answer(QUESTION, AskContext())
    answerer.close()


def test_server_down_falls_back_to_escalation_in_the_pipeline(settings_factory, tmp_path):
    answerer, settings = _answerer(settings_factory, _closed_port_url())

    class DomainRouter:
        def decide(self, question: str) -> RouteDecision:
            return RouteDecision(route="domain", confidence=0.95, reason="plant care")

    store = ConversationStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        pipeline = Pipeline.from_settings(
            settings,
            store,
            DomainRouter(),
            {"domain": answerer, "escalate": EscalationAnswerer(settings.app.company_name)},
        )
        answer = pipeline.answer(QUESTION)
    finally:
        store.close()
        answerer.close()
    assert answer.route == "escalate"
    assert "domain: domain model unavailable" in answer.fallback_reason
    assert "cannot connect" in answer.fallback_reason


def test_openai_backend_without_a_url_is_a_config_error(settings_factory):
    settings = settings_factory(**{"domain.backend": "openai"})
    with pytest.raises(ConfigError, match="domain.server.url"):
        select_backend(settings)
