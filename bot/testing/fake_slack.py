"""A local stand-in for the Slack Web API: records every call and answers like Slack.

Runs on 127.0.0.1 at a free port; the app under test reaches it through the same
`slack.api_base_url` setting a corporate proxy would use. It checks what Slack checks (a bot
token, required arguments, Block Kit size limits) so a malformed call fails here as it would
in production, and it can be told to fail the next calls (429 + Retry-After, 5xx) to exercise
the retry path. Tests wait on its condition variable, never on sleeps.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

REQUIRED = {
    "chat.postMessage": ("channel",),
    "chat.update": ("channel", "ts"),
    "chat.postEphemeral": ("channel", "user"),
    "chat.getPermalink": ("channel", "message_ts"),
    "views.open": ("trigger_id", "view"),
    "views.publish": ("user_id", "view"),
    "usergroups.users.list": ("usergroup",),
}


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.args.get("blocks") or []
        return json.loads(blocks) if isinstance(blocks, str) else blocks

    def block_text(self) -> str:
        """All text in the blocks, flattened: what a person would read."""
        return json.dumps(self.blocks, ensure_ascii=False)


@dataclass
class Failure:
    method: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    times: int = 1
    when: Callable[[dict[str, Any]], bool] | None = None


class FakeSlack:
    def __init__(self, *, bot_user_id: str = "UBOT", usergroups: dict[str, list[str]] | None = None) -> None:
        self.bot_user_id = bot_user_id
        self.usergroups = usergroups or {}
        self.calls: list[Call] = []
        self.failures: list[Failure] = []
        self._ts = 0
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self.socket_mode_url = ""  # what apps.connections.open hands out (tests.slack.fake_socket_mode)

    # --- control ---------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                fake._handle(self)

            do_GET = do_POST  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._handler = Handler
        self._listen(0)
        return self

    def _listen(self, port: int) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def go_down(self) -> None:
        """Slack unreachable: the port refuses connections until `come_back`."""
        assert self._server is not None
        self._port = self._server.server_address[1]
        self.stop()

    def come_back(self) -> None:
        self._listen(self._port)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def fail_next(self, method: str, status: int = 429, *, retry_after: str | None = "0",
                  body: dict[str, Any] | None = None, times: int = 1,
                  when: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """Fail the next `times` calls of `method` (only those whose arguments match `when`)."""
        headers = {"Retry-After": retry_after} if retry_after is not None and status == 429 else {}
        error = {"ok": False, "error": "ratelimited" if status == 429 else "internal_error"}
        with self._cond:
            self.failures.append(Failure(method, status, headers, body or error, times, when))

    def calls_to(self, method: str, *, ok_only: bool = True) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.method == method and (c.status == 200 or not ok_only)]

    def wait_for(self, predicate: Callable[[FakeSlack], Any], timeout: float = 15.0) -> Any:
        """Block until `predicate(self)` is truthy (re-checked on every recorded call)."""
        with self._cond:
            result = self._cond.wait_for(lambda: predicate(self), timeout=timeout)
        assert result, "the fake Slack never saw the expected calls; got: " + ", ".join(c.method for c in self.calls)
        return result

    # --- serving ---------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        method = parts.path.rsplit("/", 1)[-1]
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length).decode("utf-8") if length else ""
        args: dict[str, Any] = dict(parse_qsl(parts.query))
        if "json" in (request.headers.get("Content-Type") or ""):
            args.update(json.loads(raw or "{}"))
        else:
            args.update(parse_qsl(raw))
        for key in ("blocks", "view"):
            if isinstance(args.get(key), str) and args[key][:1] in "[{":
                args[key] = json.loads(args[key])
        status, headers, body = self._respond(method, args, request.headers.get("Authorization", ""))
        with self._cond:
            # Recorded before the reply leaves, so a waiting test never misses the call.
            self.calls.append(Call(method, args, status, body))
            self._cond.notify_all()
        payload = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(payload)

    def _respond(self, method: str, args: dict[str, Any], auth: str) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._cond:
            for failure in self.failures:
                if failure.method == method and failure.times > 0 and (failure.when is None or failure.when(args)):
                    failure.times -= 1
                    return failure.status, failure.headers, failure.body
        # Socket Mode's URL comes with the app-level token; everything else needs the bot token.
        if not auth.startswith("Bearer xapp-" if method == "apps.connections.open" else "Bearer xoxb-"):
            return 200, {}, {"ok": False, "error": "not_authed"}
        missing = [key for key in REQUIRED.get(method, ()) if not args.get(key)]
        if missing:
            return 200, {}, {"ok": False, "error": f"missing_argument:{missing[0]}"}
        problem = _block_problem(args.get("blocks"))
        if problem:
            return 200, {}, {"ok": False, "error": "invalid_blocks", "errors": [problem]}
        return 200, {}, self._answer(method, args)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "apps.connections.open":
            if not self.socket_mode_url:
                return {"ok": False, "error": "not_allowed_token_type"}
            return {"ok": True, "url": self.socket_mode_url}
        if method == "auth.test":
            return {"ok": True, "url": "https://rareroots.slack.com/", "team": "Rare Roots", "user": "supportbot",
                    "team_id": "T0001", "user_id": self.bot_user_id, "bot_id": "B0001"}
        if method == "chat.postMessage":
            if not args.get("text") and not args.get("blocks"):
                return {"ok": False, "error": "no_text"}
            with self._cond:
                self._ts += 1
                ts = f"{1_700_000_000 + self._ts}.000100"
            return {"ok": True, "channel": args["channel"], "ts": ts,
                    "message": {"text": args.get("text", ""), "ts": ts, "user": self.bot_user_id}}
        if method == "chat.update":
            return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text", "")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": "1700000000.999999"}
        if method == "chat.getPermalink":
            ts = str(args["message_ts"]).replace(".", "")
            return {"ok": True, "channel": args["channel"],
                    "permalink": f"https://rareroots.slack.com/archives/{args['channel']}/p{ts}"}
        if method in ("views.open", "views.publish"):
            return {"ok": True, "view": {"id": "V0001", **(args.get("view") or {})}}
        if method == "usergroups.users.list":
            group = self.usergroups.get(args["usergroup"])
            if group is None:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": group}
        return {"ok": True}


def _block_problem(blocks: Any) -> str:
    if not blocks:
        return ""
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if len(blocks) > 50:
        return "more than 50 blocks"
    for block in blocks:
        text = (block.get("text") or {}).get("text", "") if isinstance(block.get("text"), dict) else ""
        if len(text) > 3000:
            return "section text over 3000 characters"
    return ""
