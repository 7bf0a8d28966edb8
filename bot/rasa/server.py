"""The Rasa action server: rasa-sdk's own Sanic app, bound to one pipeline, in one process.

rasa-sdk's `run()` pickles its executor into worker processes, which would load every model
again per worker; `serve_actions` instead runs the same app in a single process on a socket
we bind, so models load once and a port of 0 reports the port it got.

The webhook trusts the `sender_id` it is sent, so whoever can reach it can answer and vote as
anyone: it listens on 127.0.0.1 unless told otherwise, and `bot.rasa.guard` checks the shared
token (when `SUPPORTBOT_RASA_TOKEN` is set), the body size and the call's shape before the SDK
sees a request, turning every request fault into a 4xx with a JSON error.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sanic import Sanic

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.pipeline import Pipeline
from bot.rasa.actions import ACTION_SUPPORT_ANSWER, ACTION_SUPPORT_FEEDBACK, build_action_executor
from bot.rasa.guard import WEBHOOK_PATH, install_request_guard

log = logging.getLogger(__name__)


def build_action_server(settings: Settings, pipeline: Pipeline, store: ConversationStore) -> Sanic:
    """rasa-sdk's app (`/webhook`, `/actions`, `/health`) serving our two actions.

    A process serves one such app: Sanic registers apps by name ("rasa_sdk") and patches its
    own HTTP code on first start. Tests that start several set `Sanic.test_mode = True`.
    """
    from rasa_sdk.endpoint import create_app

    executor = build_action_executor(settings, pipeline, store)
    app = create_app(executor, cors_origins=None)
    token = settings.secrets.rasa_token
    install_request_guard(
        app,
        known_actions=frozenset(executor.actions),
        token=token.get_secret_value() if token is not None else None,
        max_body_bytes=settings.rasa.max_body_bytes,
    )
    if settings.metrics.enabled:
        from sanic.response import raw

        from bot.metrics import CONTENT_TYPE, METRICS_PATH, exposition

        async def prometheus_metrics(request: object) -> object:
            return raw(exposition(), content_type=CONTENT_TYPE)

        app.add_route(prometheus_metrics, METRICS_PATH, methods=["GET"], name="supportbot_metrics")
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before serving, so a port of 0 yields a real port we can log and report."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from bot.errors import ConfigError

        raise ConfigError(
            f"rasa.port: cannot listen on {host}:{port} ({exc.strerror}); choose a free port "
            "with --port or rasa.port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@contextmanager
def serve_in_thread(app: Sanic, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run the app in a background thread of this process; yields its base URL.

    For embedding the action server beside another service and for tests and benchmarks. The
    socket listens before the thread starts, so the first request cannot race the startup.
    Sanic patches its HTTP code per process on first start: a process that starts several apps
    one after another sets `Sanic.test_mode = True` first.
    """
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []
    started: list[Any] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(app.create_server(sock=sock, access_log=False))
            if server is None:
                raise RuntimeError("Sanic returned no server")
            for step in (server.startup, server.before_start, server.after_start):
                loop.run_until_complete(step())
            started.append(server)
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)
            loop.close()
            return
        finally:
            ready.set()
        loop.run_forever()
        loop.run_until_complete(server.before_stop())
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.run_until_complete(server.after_stop())
        loop.close()

    thread = threading.Thread(target=run, name="rasa-action-server", daemon=True)
    thread.start()
    ready.wait()
    try:
        if failure:
            raise failure[0]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        if started:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
        sock.close()
        Sanic.unregister_app(app)


def exposure_warning(host: str, token_set: bool) -> str | None:
    """Why this bind address is unsafe, or None: without a token, the network is the only lock.

    Anyone who reaches the webhook can answer and vote as any Rasa sender id, so an
    unauthenticated server must be reachable from the Rasa server alone.
    """
    if token_set:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: we cannot tell where it points
        loopback = False
    if loopback:
        return None
    return (
        f"Rasa action server listens on {host} without SUPPORTBOT_RASA_TOKEN: anyone who can reach "
        "it can ask and vote as any sender_id; set the token or keep the port reachable only from "
        "the Rasa server (docs/operations.md)"
    )


def serve_actions(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    build_runtime: Callable[..., Any] | None = None,
) -> None:
    """Load the models once, then serve Rasa action calls until interrupted."""
    if build_runtime is None:
        from bot.factory import build_runtime as default_build_runtime

        build_runtime = default_build_runtime
    host = settings.rasa.host if host is None else host
    port = settings.rasa.port if port is None else port
    sock = bind_socket(host, port)
    runtime = build_runtime(settings, follow_labels=True, train_seed_adapter=True)
    from bot.privacy import RetentionJob

    retention = RetentionJob(settings, runtime.store).start()
    try:
        runtime.warm_up_domain()  # the first Rasa call should not wait for the model to load
        app = build_action_server(settings, runtime.pipeline, runtime.store)
        bound_host, bound_port = sock.getsockname()[:2]
        token_set = settings.secrets.rasa_token is not None
        log.info(
            "Rasa action server listening on http://%s:%s%s (actions: %s; token %s)",
            bound_host,
            bound_port,
            WEBHOOK_PATH,
            ", ".join((ACTION_SUPPORT_ANSWER, ACTION_SUPPORT_FEEDBACK)),
            "required" if token_set else "not set",
        )
        warning = exposure_warning(host, token_set)
        if warning:
            log.warning("%s", warning)
        app.run(sock=sock, single_process=True, access_log=False, motd=False)
    finally:
        retention.stop()
        runtime.close()
        sock.close()

