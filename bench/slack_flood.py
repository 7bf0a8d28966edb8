"""Does a flood of huge unsigned requests starve the Slack endpoint? Health checks and signed
events timed while four clients POST 10 MB bodies without a signature, in a loop.

The app runs in its own process, built as `serve_slack` builds it (bench.slack's
`serve_variant`, fixed-time stand-in model, real SQLite log). Variants, in the same run:

- supportbot: our request checks (size, signature, shape) in front of Bolt.
- stock-asgi: the same app behind Bolt's stock ASGI handler, which reads and parses the whole
  body on the event loop before checking the signature (the baseline).

Each probe is a `GET /healthz` and one signed `app_mention`, on fresh connections; the figures
are their latencies during the flood. (The stock handler has no /healthz route: its 404 still
measures whether the event loop answers.)

    .venv/bin/python -m bench.slack_flood [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slack_sdk.signature import SignatureVerifier

from bench.slack import SECRET, _events, _raw_request, serve_variant
from bot.atomic import atomic_write_text
from bot.evaluation.metrics import percentile
from bot.testing.fake_slack import FakeSlack

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "slack_flood.md"
VARIANTS = ("supportbot", "stock-asgi")
FLOOD_BYTES = 10 * 1024 * 1024
FLOODERS = 4


def _round_trip(port: int, request: bytes, timeout: float = 60.0) -> tuple[float, bytes]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        status = sock.recv(64)
    return (time.perf_counter() - started) * 1000, status.split(b"\r\n", 1)[0]


def _flood(port: int, stop: threading.Event, sent: list[int]) -> None:
    head = (f"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {FLOOD_BYTES}\r\nConnection: close\r\n\r\n").encode()
    body = b"{" + b" " * (FLOOD_BYTES - 2) + b"}"
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                sock.sendall(head + body)
                sock.recv(64)
        except OSError:
            pass  # closed mid-upload after a 413: a rejected request too
        sent.append(1)


def run_variant(variant: str, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    fake = FakeSlack().start()
    with tempfile.TemporaryDirectory() as tmp:
        ports, stop_server = ctx.Queue(), ctx.Event()
        proc = ctx.Process(target=serve_variant, args=(variant, tmp, fake.url, 0.05, ports, stop_server))
        proc.start()
        port = ports.get(timeout=120)
        verifier = SignatureVerifier(SECRET)
        stop, sent = threading.Event(), []
        flooders = [threading.Thread(target=_flood, args=(port, stop, sent), daemon=True) for _ in range(FLOODERS)]
        for thread in flooders:
            thread.start()
        time.sleep(1.0)
        health: list[float] = []
        acks: list[float] = []
        bodies = _events("flood", 1000, 1_730_000_000)
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline and i < len(bodies):
            ms, _status = _round_trip(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            health.append(ms)
            ms, status = _round_trip(port, _raw_request(port, verifier, bodies[i], False))
            if b" 200" in status:
                acks.append(ms)
            i += 1
            time.sleep(0.1)
        stop.set()
        for thread in flooders:
            thread.join(timeout=120)
        stop_server.set()
        ports.get(timeout=300)
        proc.join(timeout=60)
    fake.stop()
    return {"variant": variant, "flood_requests": len(sent), "probes": i, "health": sorted(health),
            "acks": sorted(acks)}


def _p(values: list[float], q: float) -> float:
    return percentile(values, q * 100) if values else float("nan")


def render(results: list[dict[str, Any]], command: str, seconds: float) -> str:
    lines = [
        "# Slack endpoint under a flood of 10 MB unsigned requests",
        "",
        f"{FLOODERS} clients POST {FLOOD_BYTES // 2**20} MB unsigned bodies in a loop for {seconds:.0f} s; "
        "meanwhile a probe every ~0.1 s times `GET /healthz` and one signed `app_mention` (fresh connections).",
        "",
        "| variant | flood requests | probes | /healthz p50 / p95 / max ms | signed event ack p50 / p95 / max ms | events acked |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        h, a = r["health"], r["acks"]
        lines.append(
            f"| {r['variant']} | {r['flood_requests']} | {r['probes']} | "
            f"{statistics.median(h):.0f} / {_p(h, 0.95):.0f} / {h[-1]:.0f} | "
            f"{statistics.median(a) if a else float('nan'):.0f} / {_p(a, 0.95):.0f} / {a[-1] if a else float('nan'):.0f} | "
            f"{len(a)} / {r['probes']} |"
        )
    base, ours = results[-1], results[0]
    if base["health"] and ours["health"]:
        lines += ["", f"/healthz p95: supportbot {_p(ours['health'], 0.95):.0f} ms vs stock {_p(base['health'], 0.95):.0f} ms "
                  f"({_p(ours['health'], 0.95) / max(_p(base['health'], 0.95), 1e-9):.2f}x)."]
    lines += ["", f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
              f"{datetime.now(UTC):%Y-%m-%d}.", "", f"    {command}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s per variant instead of 20")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 20.0
    results = []
    for variant in VARIANTS:
        print(f"running {variant} ...", file=sys.stderr)
        results.append(run_variant(variant, seconds))
    command = ".venv/bin/python -m bench.slack_flood" + (" --quick" if args.quick else "")
    text = render(results, command, seconds)
    atomic_write_text(OUT, text)
    print(text)


if __name__ == "__main__":
    main()
    sys.exit(0)
