"""RSS per suspended request, its connection included, measured from outside the server.

    python stress/suspended_requests.py [--count 5000] [--wait 30]

Starts `trio-router run --handlers stress.suspended_app` (a sync handler that waits on I/O
through the bridge, as an upstream call would), opens ``--count`` keep-alive connections that
each send one request, and reads the server's VmRSS from /proc before and once every handler is
suspended. The anchor, in the same run: a bare trio + h11 loop that runs each request in a
greenlet that switches back to the loop to sleep (stress/suspended_anchor.py), the least a
greenlet server can hold per waiting request.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

from servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def measure(command: list[str], port: int, count: int, settle: float) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{HERE}"}
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sockets: list[socket.socket] = []
    try:
        wait_for_port(port)
        warm = socket.create_connection(("127.0.0.1", port))  # first request: imports, pools, caches
        warm.sendall(b"GET /wait?0 HTTP/1.1\r\nhost: x\r\n\r\n")
        warm.recv(4096)
        warm.close()
        time.sleep(settle)
        before = rss_bytes(server.pid)
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /wait?600 HTTP/1.1\r\nhost: x\r\n\r\n")
            sockets.append(sock)
        time.sleep(settle)  # every request read and its handler suspended
        after = rss_bytes(server.pid)
        return (after - before) / count
    finally:
        for sock in sockets:
            sock.close()
        server.kill()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--settle", type=float, default=3.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    trio_router = [sys.executable, "-m", "trio_router", "run", "--handlers", "suspended_app", "--port", str(port)]
    ours = measure(trio_router, port, args.count, args.settle)
    port = free_port()
    anchor = measure([sys.executable, str(HERE / "suspended_anchor.py"), str(port)], port, args.count, args.settle)
    print(f"{args.count} requests suspended at once, RSS growth per request (connection included)")
    print(f"{'server':<58} {'bytes':>8}")
    print(f"{'trio-router, sync handler waiting through the bridge':<58} {ours:>8,.0f}")
    print(f"{'anchor: bare trio + h11, one greenlet per request':<58} {anchor:>8,.0f}")
    print(f"{'ratio':<58} {ours / anchor:>8.2f}")


if __name__ == "__main__":
    main()
