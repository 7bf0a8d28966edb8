"""The scale-out backend: an OpenAI-compatible inference server (vLLM, TGI, Ollama, llama.cpp server).

A team that outgrows one machine serves the same LoRA adapters on an engine built for it;
the bot asks for an adapter by its registry version name as the `model` (vLLM:
`--enable-lora --lora-modules v0003=/adapters/versions/v0003`). A new version is switched to
only after the server lists it, so a promotion the server does not know yet keeps the old
adapter answering. Timeouts and server errors are retried with backoff, then reported as
`AnswererUnavailable` so the pipeline answers from retrieval or a person instead.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx

from bot.config import Settings
from bot.errors import AnswererUnavailable
from bot.llm.backend import (
    BASE_VERSION,
    AdapterRef,
    GenerationParams,
    GenerationResult,
    StopCheck,
    TextCallback,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 8.0


class ServerError(AnswererUnavailable):
    """The inference server could not answer; the message names the server and the cause."""


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OpenAIServerBackend:
    name = "openai"

    def __init__(self, settings: Settings, *, backoff_s: float = 0.5) -> None:
        cfg = settings.domain
        self.settings = settings
        self.base_url = cfg.server.url.rstrip("/")
        self.retries = cfg.server.retries
        self.backoff_s = backoff_s
        timeout = cfg.server.timeout_s
        self.client = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0))
        )
        self._base_model = cfg.server.model

    # --- model names -------------------------------------------------------------------------

    def served_models(self) -> list[str]:
        data = self._request_json("GET", "/models")
        models = data.get("data") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise ServerError(f"domain model server {self.base_url}: GET /models returned no model list")
        return [str(m.get("id")) for m in models if isinstance(m, dict) and m.get("id")]

    def base_model_name(self) -> str:
        if not self._base_model:
            served = self.served_models()
            if not served:
                raise ServerError(f"domain model server {self.base_url} serves no model")
            self._base_model = served[0]
            log.info("domain server base model=%s (first of GET /models)", self._base_model)
        return self._base_model

    def load(self, adapter: AdapterRef | None) -> ServerModel:
        if adapter is None:
            return ServerModel(self, self.base_model_name(), BASE_VERSION)
        served = self.served_models()
        if adapter.version not in served:
            raise ServerError(
                f"domain model server {self.base_url} does not serve adapter {adapter.version} "
                f"(it serves {served}); load it there, e.g. vLLM --lora-modules "
                f"{adapter.version}={adapter.path}"
            )
        return ServerModel(self, adapter.version, adapter.version)

    def close(self) -> None:
        self.client.close()

    # --- HTTP with retries -------------------------------------------------------------------

    def with_retries(self, what: str, attempt_fn: Any) -> Any:
        """Run `attempt_fn` up to 1 + server.retries times, backing off between tries."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(MAX_BACKOFF_S, self.backoff_s * 2 ** (attempt - 1))
                log.warning("domain server %s failed (%s); retry %d in %.1fs", what, last, attempt, delay)
                time.sleep(delay)  # backoff between attempts, not synchronization
            try:
                return attempt_fn()
            except _Retryable as exc:
                last = exc.reason
        raise ServerError(
            f"domain model server {self.base_url} unavailable after {self.retries + 1} attempts: {last}"
        )

    def _request_json(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        def attempt() -> Any:
            try:
                response = self.client.request(method, path, json=body)
            except httpx.TimeoutException as exc:
                raise _Retryable(f"timed out ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                raise _Retryable(f"cannot connect ({exc})") from exc
            _raise_for_status(response, self.base_url)
            try:
                return response.json()
            except json.JSONDecodeError as exc:
                raise ServerError(f"domain model server {self.base_url}{path}: reply is not JSON") from exc

        return self.with_retries(f"{method} {path}", attempt)


def _raise_for_status(response: httpx.Response, base_url: str) -> None:
    if response.status_code < 400:
        return
    detail = response.read().decode("utf-8", "replace")[:200]
    if response.status_code in RETRY_STATUSES:
        raise _Retryable(f"HTTP {response.status_code} {detail}")
    raise ServerError(
        f"domain model server {base_url} refused the request: HTTP {response.status_code} {detail}"
    )


class ServerModel:
    serial = False  # the server batches concurrent requests itself

    def __init__(self, backend: OpenAIServerBackend, model_name: str, version: str) -> None:
        self.backend = backend
        self.model_name = model_name
        self.version = version

    def request_body(self, messages: list[dict[str, str]], params: GenerationParams, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "stream": stream,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.repetition_penalty != 1.0:  # vLLM's extra parameter; others ignore it
            body["repetition_penalty"] = params.repetition_penalty
        return body

    def generate(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        on_text: TextCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> GenerationResult:
        started = time.perf_counter()
        backend = self.backend
        if on_text is None and should_stop is None:
            data = backend._request_json("POST", "/chat/completions", self.request_body(messages, params, False))
            try:
                choice = data["choices"][0]
                text = choice["message"]["content"] or ""
            except (KeyError, IndexError, TypeError) as exc:
                raise ServerError(f"domain model server {backend.base_url}: malformed completion") from exc
            tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
            return GenerationResult(
                text, tokens, choice.get("finish_reason") or "stop", time.perf_counter() - started
            )
        return backend.with_retries(
            "POST /chat/completions (stream)",
            lambda: self._stream_once(messages, params, on_text, should_stop, started),
        )

    def _stream_once(
        self,
        messages: list[dict[str, str]],
        params: GenerationParams,
        on_text: TextCallback | None,
        should_stop: StopCheck | None,
        started: float,
    ) -> GenerationResult:
        backend = self.backend
        text = ""
        pieces = 0
        first_token_s = 0.0
        finish = "length"
        body = self.request_body(messages, params, True)
        try:
            with backend.client.stream("POST", "/chat/completions", json=body) as response:
                _raise_for_status(response, backend.base_url)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        choice = json.loads(payload)["choices"][0]
                    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
                        raise ServerError(
                            f"domain model server {backend.base_url}: malformed stream event"
                        ) from exc
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        if not pieces:
                            first_token_s = time.perf_counter() - started
                        pieces += 1
                        text += piece
                        if on_text is not None:
                            on_text(text)
                        reason = should_stop(text) if should_stop is not None else None
                        if reason:
                            finish = reason
                            break
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({exc})") from exc
        return GenerationResult(text, pieces, finish, time.perf_counter() - started, first_token_s)

    def close(self) -> None:
        return None
