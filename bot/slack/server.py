"""Run the Slack app: Socket Mode (no public URL) or the HTTP Events API under uvicorn.

HTTP mode uses Bolt's ASGI handler with one change. Bolt's stock handler calls the sync
`App.dispatch` on the event loop. For Events API requests that is the fastest path (Bolt acks
an event before any listener runs, so dispatch is ~1 ms of CPU), but interactivity and slash
commands run our listener before the ack (a label written to the log, a staff check that may
ask Slack for the user group), and one of those on the loop stalls every other request. So
JSON event callbacks dispatch on the loop and form-encoded payloads on a thread pool; moving
events to the pool too made acks 3-4x slower under a burst (GIL hand-offs; bench/slack.py).
A GET on /healthz answers 200 for load balancers. Shutdown order matters: stop taking
requests, finish accepted questions, then close the runtime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import uvicorn
from slack_bolt import App
from slack_bolt.adapter.asgi import SlackRequestHandler
from slack_bolt.adapter.asgi.http_response import AsgiHttpResponse
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from bot.config import Settings
from bot.errors import ConfigError
from bot.metrics import CONTENT_TYPE, METRICS_PATH, exposition
from bot.slack import request_checks

log = logging.getLogger(__name__)

HEALTH_PATH = "/healthz"
DISPATCH_THREADS = 32
Mode = Literal["socket", "http"]


def resolve_mode(settings: Settings) -> Mode:
    """The connection mode, or a ConfigError naming the missing secret before any model loads."""
    secrets, mode = settings.secrets, settings.slack.mode
    if secrets.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set; export the app's bot token (docs/slack.md)")
    if mode == "socket" or (mode == "auto" and secrets.slack_app_token is not None):
        if secrets.slack_app_token is None:
            raise ConfigError(
                "slack.mode is 'socket' but SLACK_APP_TOKEN is not set; create an app-level token "
                "with connections:write, or set slack.mode = 'http'"
            )
        return "socket"
    if secrets.slack_signing_secret is None:
        raise ConfigError(
            "SLACK_SIGNING_SECRET is not set; HTTP mode needs it to verify Slack's requests "
            "(or set SLACK_APP_TOKEN to use Socket Mode)"
        )
    return "http"


class ThreadedSlackRequestHandler(SlackRequestHandler):
    """Bolt's ASGI adapter behind cheap request checks, with listener-before-ack payloads off the
    event loop, plus a health check.

    Every POST to the events path is size-checked (413), signature-checked (401) and
    shape-checked (400) by `bot.slack.request_checks` before Bolt sees it, so nothing unsigned
    or oversized is parsed or logged, and Bolt never raises on a malformed body. A big signed
    body is checked on the thread pool, so even a valid-but-large request cannot hold the loop.
    """

    INLINE_CHECK_BYTES = 64 * 1024  # below this, checking on the loop is cheaper than a thread hop

    def __init__(
        self, app: App, path: str, executor: ThreadPoolExecutor, *, signing_secret: str = "",
        max_body_bytes: int = 1_048_576, metrics: bool = True,
    ) -> None:
        super().__init__(app, path)
        self.executor = executor
        self.signing_secret = signing_secret
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def dispatch_checked(self, body: bytes, query: str, headers: dict[str, list[str]]) -> BoltResponse:
        bolt_headers: dict[str, str | Sequence[str]] = dict(headers)
        bolt_request = BoltRequest(body=body.decode("utf-8"), query=query, headers=bolt_headers)
        if "application/json" in ",".join(headers.get("content-type", [])):  # Events API: Bolt acks before listeners run
            return self.app.dispatch(bolt_request)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.app.dispatch, bolt_request)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == HEALTH_PATH:
            await _send_plain(send, 200, b"ok")
            return
        if self.metrics and scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == METRICS_PATH:
            body = await asyncio.get_running_loop().run_in_executor(self.executor, exposition)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", CONTENT_TYPE.encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == self.path:
            await self._handle_post(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _handle_post(self, scope: Any, receive: Any, send: Any) -> None:
        bolt_headers: dict[str, list[str]] = {}
        for name, value in scope.get("headers", []):
            bolt_headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        headers = {name: values[0] for name, values in bolt_headers.items()}  # what the checks read
        rejection = request_checks.content_length_problem(headers, self.max_body_bytes)
        if rejection is None:
            try:
                body = await request_checks.read_body_limited(receive, self.max_body_bytes)
            except request_checks.BodyTooLarge as exc:
                rejection = request_checks.Rejection(413, str(exc))
        if rejection is None:
            rejection = await self._check(headers, body)
        if rejection is not None:
            client = scope.get("client") or ("?", 0)
            log.warning("rejected %s %s from %s: %d %s", scope["method"], scope["path"], client[0],
                        rejection.status, rejection.reason)
            await _send_json(send, rejection.status, {"error": rejection.reason})
            return
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            response = await self.dispatch_checked(body, query, bolt_headers)
        except Exception:  # a listener bug must cost one request, never the server
            log.exception("dispatching a Slack request failed")
            await _send_json(send, 500, {"error": "internal error"})
            return
        asgi_response = AsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)
        await send(asgi_response.get_response_start())
        await send(asgi_response.get_response_body())

    async def _check(self, headers: dict[str, str], body: bytes) -> request_checks.Rejection | None:
        def check() -> request_checks.Rejection | None:
            return request_checks.signature_problem(headers, body, self.signing_secret) or (
                request_checks.payload_problem(headers.get("content-type", ""), body)
            )

        if len(body) <= self.INLINE_CHECK_BYTES:
            return check()
        return await asyncio.get_running_loop().run_in_executor(self.executor, check)


async def _send_plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))  # the unread rest of the body is not worth reading
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _listening_socket(host: str, port: int) -> socket.socket:
    """Bound before uvicorn starts, so the real port is known at once (port 0 in tests) and
    connections made meanwhile wait in the backlog instead of being refused."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class HttpSlackServer:
    """uvicorn serving one Bolt app on host:port/path; `serve_forever` or a background thread."""

    def __init__(
        self, app: App, *, host: str, port: int, path: str, signing_secret: str, max_body_bytes: int = 1_048_576,
        handler_cls: type[SlackRequestHandler] | None = None, metrics: bool = True,
    ) -> None:
        if not signing_secret:
            raise ConfigError("SLACK_SIGNING_SECRET is not set; HTTP mode needs it to verify Slack's requests")
        self.executor = ThreadPoolExecutor(DISPATCH_THREADS, thread_name_prefix="slack-dispatch")
        handler: SlackRequestHandler = (
            handler_cls(app, path)
            if handler_cls is not None
            else ThreadedSlackRequestHandler(
                app, path, self.executor, signing_secret=signing_secret, max_body_bytes=max_body_bytes,
                metrics=metrics,
            )
        )
        self.sock = _listening_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.path = path
        config = uvicorn.Config(
            handler, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=30
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, app: App, settings: Settings) -> HttpSlackServer:
        cfg, secret = settings.slack, settings.secrets.slack_signing_secret
        return cls(
            app, host=cfg.http_host, port=cfg.http_port, path=cfg.http_path,
            signing_secret=secret.get_secret_value() if secret is not None else "",
            max_body_bytes=cfg.max_body_bytes, metrics=settings.metrics.enabled,
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}{self.path}"

    def serve_forever(self) -> None:
        """Block until SIGINT/SIGTERM; returns (instead of dying) so the caller can drain."""
        stop_signals: list[int] = []
        previous = {sig: signal.signal(sig, lambda s, _f: stop_signals.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            log.info("Slack HTTP Events API listening on %s", self.url)
            self.server.run(sockets=[self.sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.executor.shutdown(wait=True)
        log.info("HTTP server stopped%s", f" (signal {stop_signals[0]})" if stop_signals else "")

    def start_in_thread(self) -> None:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="slack-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.executor.shutdown(wait=True)
        self.sock.close()


def run_socket_mode(app: App, settings: Settings, stop: threading.Event | None = None) -> None:
    """Connect over Socket Mode and block until SIGINT/SIGTERM (or `stop` is set)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    token = settings.secrets.slack_app_token
    if token is None:
        raise ConfigError("SLACK_APP_TOKEN is not set; Socket Mode needs an app-level token")
    stop = stop or threading.Event()
    # Signals reach the main thread only; embedded elsewhere (tests, a host process) `stop` ends it.
    in_main = threading.current_thread() is threading.main_thread()
    previous = ({sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
                if in_main else {})
    handler = SocketModeHandler(app, app_token=token.get_secret_value())
    try:
        handler.connect()
        log.info("connected to Slack over Socket Mode")
        stop.wait()
    finally:
        handler.close()
        for sig, old in previous.items():
            signal.signal(sig, old)


def serve_slack(settings: Settings) -> None:
    """`supportbot serve` with Slack tokens: load the runtime, warm the model, serve until stopped."""
    from bot.factory import build_runtime
    from bot.slack.app import build_app, build_services
    from bot.slack.client import build_web_client

    mode = resolve_mode(settings)
    runtime = build_runtime(settings, watch=settings.knowledge.watch, follow_labels=True,
                            train_seed_adapter=True)
    from bot.privacy import RetentionJob

    retention = RetentionJob(settings, runtime.store).start()
    services = None
    try:
        runtime.warm_up_domain()
        client = build_web_client(settings)
        if not _wait_until_slack_answers(client, settings):
            log.info("stopped while waiting for Slack")
            return
        services = build_services(settings, runtime.pipeline, runtime.store, client=client, knowledge=runtime.knowledge,
                                  memory=runtime.memory)
        app = build_app(settings, runtime.pipeline, runtime.store, services=services)
        if settings.metrics.port:  # Socket Mode has no HTTP server; HTTP mode may want its own port too
            from bot.metrics import serve_metrics

            serve_metrics(settings.metrics.host, settings.metrics.port)
        if mode == "socket":
            run_socket_mode(app, settings)
        else:
            HttpSlackServer.from_settings(app, settings).serve_forever()
    finally:
        if services is not None:
            services.drain()
            if services.jobs.running("train"):
                log.warning("a training run was still going at shutdown; it stops with the process")
        retention.stop()
        runtime.close()


def _wait_until_slack_answers(client: Any, settings: Settings) -> bool:
    """auth.test with back-off until Slack answers (one log line per try); False if stopped meanwhile.

    Bolt calls auth.test when the app is built and turns a network error into a traceback, so
    the bot waits here first: a Slack outage, or a proxy still starting, should delay the bot,
    not kill it.
    """
    from bot.slack.client import wait_for_slack

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return wait_for_slack(client, max_delay_s=settings.slack.connect_retry_max_s, stop=stop) is not None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
