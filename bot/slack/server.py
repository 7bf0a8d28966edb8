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
import logging
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import uvicorn
from slack_bolt import App
from slack_bolt.adapter.asgi import SlackRequestHandler
from slack_bolt.adapter.asgi.http_request import AsgiHttpRequest
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

from bot.config import Settings
from bot.errors import AnswererUnavailable, ConfigError

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
    """Bolt's ASGI adapter with listener-before-ack payloads off the event loop, plus a health check."""

    def __init__(self, app: App, path: str, executor: ThreadPoolExecutor) -> None:
        super().__init__(app, path)
        self.executor = executor

    async def dispatch(self, request: AsgiHttpRequest) -> BoltResponse:
        headers = request.get_headers()
        bolt_request = BoltRequest(body=await request.get_raw_body(), query=request.query_string, headers=headers)
        content_type = headers.get("content-type", "")
        if "application/json" in (content_type if isinstance(content_type, str) else ",".join(content_type)):  # Events API: Bolt acks before listeners run
            return self.app.dispatch(bolt_request)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.app.dispatch, bolt_request)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == HEALTH_PATH:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await super().__call__(scope, receive, send)


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
        self, app: App, *, host: str, port: int, path: str, handler_cls: type[SlackRequestHandler] | None = None
    ) -> None:
        self.executor = ThreadPoolExecutor(DISPATCH_THREADS, thread_name_prefix="slack-dispatch")
        handler: SlackRequestHandler = (
            handler_cls(app, path) if handler_cls is not None else ThreadedSlackRequestHandler(app, path, self.executor)
        )
        self.sock = _listening_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.path = path
        config = uvicorn.Config(
            handler, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=30
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

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
    previous = {sig: signal.signal(sig, lambda _s, _f: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
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

    mode = resolve_mode(settings)
    runtime = build_runtime(settings, watch=settings.knowledge.watch)
    services = None
    try:
        warm_up = getattr(runtime.domain, "warm_up", None)
        if callable(warm_up):
            try:
                warm_up()  # the first customer should not wait for the model to load
            except AnswererUnavailable as exc:  # e.g. the inference server is still starting
                log.warning("domain model not ready at start (%s); it loads on the first domain question, "
                            "and until then those questions fall back to retrieval or a person", exc)
        services = build_services(settings, runtime.pipeline, runtime.store, knowledge=runtime.knowledge)
        app = build_app(settings, runtime.pipeline, runtime.store, services=services)
        if mode == "socket":
            run_socket_mode(app, settings)
        else:
            cfg = settings.slack
            HttpSlackServer(app, host=cfg.http_host, port=cfg.http_port, path=cfg.http_path).serve_forever()
    finally:
        if services is not None:
            services.drain()
            if services.jobs.running("train"):
                log.warning("a training run was still going at shutdown; it stops with the process")
        runtime.close()
