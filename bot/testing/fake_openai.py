"""A fake OpenAI-compatible server: a real HTTP server on 127.0.0.1 speaking the chat-completions
API (plain and streamed), with knobs for slowness and failures, recording every request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeServerState:
    """What the fake server does next, and every request it received."""

    models: list[str] = field(default_factory=lambda: ["smollm2-base"])
    reply: str = "Water a Masdevallia when the moss feels almost dry, about twice a week."
    delay_s: float = 0.0
    fail_next: int = 0  # answer this many chat requests with HTTP 500 first
    fail_status: int = 500
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: FakeServerState

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(
                200, {"object": "list", "data": [{"id": m, "object": "model"} for m in self.state.models]}
            )
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        try:
            self._chat()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            return

    def _chat(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": "not found"}})
            return
        state = self.state
        with state.lock:
            state.requests.append(body)
            failing = state.fail_next > 0
            if failing:
                state.fail_next -= 1
        if state.delay_s:
            time.sleep(state.delay_s)  # simulates a slow server (the client's timeout is under test)
        if failing:
            self._json(state.fail_status, {"error": {"message": "internal error"}})
            return
        if body.get("model") not in state.models:
            self._json(404, {"error": {"message": f"model {body.get('model')} not found"}})
            return
        words = state.reply.split(" ")
        words = words[: max(1, int(body.get("max_tokens") or len(words)))]
        if not body.get("stream"):
            self._json(
                200,
                {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(words)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"completion_tokens": len(words)},
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            event = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


@dataclass
class FakeServer:
    url: str
    state: FakeServerState


@contextmanager
def serve_fake_openai() -> Iterator[FakeServer]:
    """The server on a free port for the duration of the block."""
    state = FakeServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeServer(url=f"http://127.0.0.1:{server.server_address[1]}/v1", state=state)
    finally:
        server.shutdown()
        server.server_close()
