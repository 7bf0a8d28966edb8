"""A fake Slack Socket Mode endpoint: a real WebSocket server on 127.0.0.1 that says hello,
pushes `events_api` envelopes, records the acks the app sends back, and can drop a connection
the way Slack does when it rotates them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from websockets.sync.server import ServerConnection, serve


class FakeSocketMode:
    def __init__(self) -> None:
        self.connections: list[ServerConnection] = []
        self.acks: list[str] = []
        self._cond = threading.Condition()
        self._server = serve(self._handle, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-socket-mode", daemon=True)

    def start(self) -> FakeSocketMode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link/?ticket=fake"

    def _handle(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1,
                                    "connection_info": {"app_id": "A0001"},
                                    "debug_info": {"host": "fake", "approximate_connection_time": 3600}}))
        with self._cond:
            self.connections.append(connection)
            self._cond.notify_all()
        try:
            for message in connection:
                data = json.loads(message)
                if isinstance(data, dict) and data.get("envelope_id"):
                    with self._cond:
                        self.acks.append(str(data["envelope_id"]))
                        self._cond.notify_all()
        except Exception:  # the connection was dropped: that is the point of drop()
            return

    def wait_for(self, predicate: Callable[[FakeSocketMode], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out; acks so far: {self.acks}, connections: {len(self.connections)}")
                self._cond.wait(min(left, 0.2))

    def send_event(self, envelope_id: str, event: dict[str, Any], event_id: str) -> None:
        """An Events API callback over the newest connection, as Slack wraps it for Socket Mode."""
        envelope = {
            "envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": False,
            "retry_attempt": 0, "retry_reason": "",
            "payload": {"token": "unused-in-socket-mode", "team_id": "T0001", "api_app_id": "A0001",
                        "event": event, "type": "event_callback", "event_id": event_id,
                        "event_time": int(time.time()), "authorizations": [
                            {"team_id": "T0001", "user_id": "UBOT", "is_bot": True}]},
        }
        self.connections[-1].send(json.dumps(envelope))

    def drop(self) -> None:
        """Close the newest connection from the server side."""
        self.connections[-1].close()
