"""The Rasa action server: rasa-sdk's own Sanic app, bound to one pipeline, in one process.

rasa-sdk's `run()` pickles its executor into worker processes, which would load every model
again per worker; `serve_actions` instead runs the same app in a single process on a socket
we bind, so models load once and a port of 0 reports the port it got.

rasa-sdk answers an unknown action with 404 and a rejected one with 400, but a body that is
not JSON or a tracker without a sender id reaches its catch-all handler as a 500 with a Python
error message. A request middleware turns those into the same 400 `{"error", "action_name"}`
shape Rasa already handles as a rejected action, before the SDK sees them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import zlib
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from sanic import Request, Sanic, response
from sanic.response import HTTPResponse

from bot.config import Settings
from bot.conversation_log import ConversationStore
from bot.pipeline import Pipeline
from bot.rasa.actions import ACTION_SUPPORT_ANSWER, ACTION_SUPPORT_FEEDBACK, build_action_executor

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhook"


def find_action_call_problem(
    body: bytes, content_encoding: str | None, known_actions: Collection[str]
) -> tuple[str, str] | None:
    """Why a webhook body cannot be run, as (error, action name), or None when it can.

    Unknown actions pass through so rasa-sdk answers them with its own 404.
    """
    raw = body
    if (content_encoding or "").lower() == "deflate":
        try:
            raw = zlib.decompress(body)
        except zlib.error:
            return "request body says Content-Encoding: deflate but is not deflate data", ""
    try:
        call = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "Invalid body request: not JSON", ""
    if not isinstance(call, dict):
        return f"Invalid body request: expected a JSON object, got {type(call).__name__}", ""
    action = call.get("next_action")
    if not isinstance(action, str) or action not in known_actions:
        return None
    tracker = call.get("tracker")
    if not isinstance(tracker, dict):
        return "malformed tracker: 'tracker' must be an object", action
    if not isinstance(tracker.get("sender_id"), str) or not tracker["sender_id"]:
        return "malformed tracker: 'tracker.sender_id' must be a non-empty string", action
    for key, kind in (("latest_message", dict), ("slots", dict), ("events", list)):
        value = tracker.get(key)
        if value is not None and not isinstance(value, kind):
            return f"malformed tracker: 'tracker.{key}' must be a JSON {kind.__name__}", action
    domain = call.get("domain")
    if domain is not None and not isinstance(domain, dict):
        return "malformed domain: 'domain' must be an object", action
    return None


def build_action_server(settings: Settings, pipeline: Pipeline, store: ConversationStore) -> Sanic:
    """rasa-sdk's app (`/webhook`, `/actions`, `/health`) serving our two actions.

    A process serves one such app: Sanic registers apps by name ("rasa_sdk") and patches its
    own HTTP code on first start. Tests that start several set `Sanic.test_mode = True`.
    """
    from rasa_sdk.endpoint import create_app

    executor = build_action_executor(settings, pipeline, store)
    app = create_app(executor, cors_origins=None)
    known = frozenset(executor.actions)

    @app.on_request
    async def reject_malformed_action_calls(request: Request) -> HTTPResponse | None:
        if request.method != "POST" or request.path != WEBHOOK_PATH:
            return None
        problem = find_action_call_problem(request.body, request.headers.get("Content-Encoding"), known)
        if problem is None:
            return None
        error, action_name = problem
        log.warning("rejected rasa action call action=%s: %s", action_name or "(unknown)", error)
        return response.json({"error": error, "action_name": action_name}, status=400)

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


def serve_actions(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    build_runtime: Callable[[Settings], Any] | None = None,
) -> None:
    """Load the models once, then serve Rasa action calls until interrupted."""
    if build_runtime is None:
        from bot.factory import build_runtime as default_build_runtime

        build_runtime = default_build_runtime
    host = settings.rasa.host if host is None else host
    port = settings.rasa.port if port is None else port
    sock = bind_socket(host, port)
    runtime = build_runtime(settings)
    try:
        app = build_action_server(settings, runtime.pipeline, runtime.store)
        bound_host, bound_port = sock.getsockname()[:2]
        log.info(
            "Rasa action server listening on http://%s:%s%s (actions: %s)",
            bound_host,
            bound_port,
            WEBHOOK_PATH,
            ", ".join((ACTION_SUPPORT_ANSWER, ACTION_SUPPORT_FEEDBACK)),
        )
        app.run(sock=sock, single_process=True, access_log=False, motd=False)
    finally:
        runtime.close()
        sock.close()

