"""Memory per idle WebSocket session, and echo round trips, against `trio-router run`.

    python stress/websockets.py [--sessions 2000] [--round-trips 20000]

Starts the reference app in a subprocess, opens N sessions to its echo endpoint (each says one
message, then stays idle: its handler is suspended in ``receive``), and reads the server's RSS
from /proc before and after. Then times sequential echo round trips on one session, against the
anchor of the same client talking to trio-websocket's own server (``serve_websocket``, an async
echo handler) in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import trio
from servers import free_port, wait_for_port  # stress/ runs as scripts: its modules import by name
from trio_websocket import WebSocketRequest, open_websocket_url, serve_websocket

ROOT = Path(__file__).parent.parent


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1))


@contextlib.contextmanager
def reference_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "TRIO_ROUTER_ACCESS_LOG": "false", "TRIO_ROUTER_MAX_WEBSOCKETS": "100000"}
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_router", "run", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


async def hold_sessions(url: str, count: int, opened: trio.Event, release: trio.Event) -> None:
    ready = 0

    async def one() -> None:
        nonlocal ready
        async with open_websocket_url(url) as ws:
            await ws.send_message("count")
            await ws.get_message()
            ready += 1
            if ready == count:
                opened.set()
            await release.wait()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


async def round_trips(url: str, count: int) -> float:
    async with open_websocket_url(url) as ws:
        start = time.perf_counter()
        for _ in range(count):
            await ws.send_message("ping")
            await ws.get_message()
        return (time.perf_counter() - start) / count * 1e6


async def _anchor_echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    with contextlib.suppress(Exception):
        while True:
            await ws.send_message(await ws.get_message())


def serve_anchor(port: int) -> None:
    """The anchor server (run in its own process, like ours): trio-websocket's own, async echo."""
    trio.run(serve_websocket, _anchor_echo, "127.0.0.1", port, None)


@contextlib.contextmanager
def anchor_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, __file__, "--serve-anchor", str(port)])
    try:
        wait_for_port(port)
        yield process
    finally:
        process.kill()  # nothing to drain
        process.wait(timeout=30)


async def measure(url: str, pid: int, sessions: int, trips: int) -> tuple[float, float]:
    """(KiB of server RSS per idle session, microseconds per echo round trip)."""
    await round_trips(url, 100)  # warm up: pools, imports, first allocations
    before = rss_kib(pid)
    opened, release = trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_sessions, url, sessions, opened, release)
        with trio.fail_after(120):
            await opened.wait()
        await trio.sleep(1)
        after = rss_kib(pid)
        release.set()
    return (after - before) / sessions, await round_trips(url, trips)


async def main_async(sessions: int, trips: int) -> None:
    port, anchor_port = free_port(), free_port()
    with reference_server(port) as server:
        ours = await measure(f"ws://127.0.0.1:{port}/pets/echo", server.pid, sessions, trips)
    with anchor_server(anchor_port) as anchor_process:
        anchor = await measure(f"ws://127.0.0.1:{anchor_port}/", anchor_process.pid, sessions, trips)
    print(f"{sessions} idle sessions, {trips} sequential echo round trips on one session")
    print(f"{'server':54} {'KiB/session':>11} {'us/trip':>8}")
    print(f"{'trio-router, sync handler in a greenlet (/pets/echo)':54} {ours[0]:11.1f} {ours[1]:8.1f}")
    print(f"{'anchor: trio-websocket serve_websocket, async echo':54} {anchor[0]:11.1f} {anchor[1]:8.1f}")
    print(f"{'ratio':54} {ours[0] / anchor[0]:11.2f} {ours[1] / anchor[1]:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--round-trips", type=int, default=20000)
    parser.add_argument("--serve-anchor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_anchor:
        serve_anchor(args.serve_anchor)
        return
    trio.run(main_async, args.sessions, args.round_trips)


if __name__ == "__main__":
    main()
