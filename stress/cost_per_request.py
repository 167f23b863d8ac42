"""What one request costs the server, measured steadily enough to compare small changes on a
noisy 2-core box, where req/s moves by +-10% between runs of the same code.

    python stress/cost_per_request.py [--tree DIR ...] [--path /pets/1] [--seconds 8] [--callgrind]
    python stress/cost_per_request.py --gateway [--tree DIR ...] [--callgrind]

For each source tree (default: this one; give two to compare a change), a trio-router server
(the petstore, access log off) is started from that tree, pinned to CPU 0, and driven by
``wrk -c64`` on CPU 1. Reported per tree: requests, server CPU per request (user + system time
from /proc over the run) and, with ``--callgrind``, instructions per request counted by valgrind
(collection switched on only while wrk runs: exactly repeatable, whatever else the machine does).

With ``--rate R`` the load is R requests a second from stress/loadgen.c instead of wrk's
closed loop: each request usually finds the server idle, so nothing is amortised over a batch
of ready connections (the cost a server pays at moderate load). Under callgrind keep R low (the
server runs ~40x slower there): 20 for the gateway.

With ``--gateway`` the server is the LLM gateway (no tenants) in front of a mock backend on
CPU 1, and wrk POSTs non-streamed chat completions: the cost counted is the gateway's alone.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loadgen import fixed_rate
from servers import free_port, free_port_pair, wait_for_port  # stress/ runs as scripts: modules import by name

ROOT = Path(__file__).resolve().parent.parent


_CHAT = '{"model": "mock-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}'
_POST_SCRIPT = f"""wrk.method = "POST"
wrk.body = '{_CHAT}'
wrk.headers["Content-Type"] = "application/json"
"""


def _load(url: str, seconds: float, gateway: bool, rate: float | None, script: Path | None) -> int:
    """Requests answered in ``seconds`` of load: wrk's closed loop (64 connections), or with
    ``rate`` that many requests a second (fixed rate: a request usually finds the server idle)."""
    if rate is None:
        return _wrk(url, seconds, script)
    body = _CHAT.encode() if gateway else None
    report = fixed_rate(url, rate, seconds, body=body, headers={"content-type": "application/json"}, warmup=0)
    return int(report["measured"])


def _wrk(url: str, seconds: float, script: Path | None) -> int:
    extra = ["-s", str(script)] if script else []
    output = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds:g}s", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _started(args: list[str], cpu: int, port: int, cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        ["taskset", "-c", str(cpu), *args], cwd=cwd, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, 300)
        yield process
    finally:
        process.kill()
        process.wait()


def measure(tree: Path, path: str, seconds: float, callgrind: bool, gateway: bool, rate: float | None) -> str:
    port = free_port()
    app = (
        ["--handlers", "handlers.gateway", "--spec", "specs/gateway.yaml"]
        if gateway
        else ["--handlers", "handlers.petstore", "--spec", "specs/petstore.yaml"]
    )
    server = [sys.executable, "-m", "trio_router", "run", *app, "--no-access-log", "--port", str(port)]
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as stack:
        out, env, script = Path(scratch) / "callgrind.out", {}, None
        url = f"http://127.0.0.1:{port}{path}"
        if gateway:  # the backend shares the load generator's core: only the gateway is on CPU 0
            mock_port = free_port_pair()
            mock = [
                sys.executable,
                "-m",
                "trio_router",
                "mock-backend",
                "--port",
                str(mock_port),
                "--tokens-per-second",
                "0",
            ]
            stack.enter_context(_started(mock, 1, mock_port, tree, {}))
            config = Path(scratch) / "gateway.yaml"
            backend = {"name": "mock", "url": f"http://127.0.0.1:{mock_port}", "models": ["mock-small"]}
            config.write_text(json.dumps({"backends": [backend]}))  # JSON is YAML
            env = {"GATEWAY_CONFIG": str(config)}
            script = Path(scratch) / "post.lua"
            script.write_text(_POST_SCRIPT)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
        if callgrind:
            server = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *server]
        process = stack.enter_context(_started(server, 0, port, tree, env))
        _load(url, 3 if callgrind else 2, gateway, rate, script)  # warm up
        if callgrind:
            subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], capture_output=True, check=True)
            count = _load(url, seconds, gateway, rate, script)
            subprocess.run(["callgrind_control", "-d", str(process.pid)], capture_output=True, check=True)
            dump = next(name for name in glob.glob(f"{out}*") if name != str(out))
            total = int(re.search(r"^totals: (\d+)", Path(dump).read_text(), re.M).group(1))  # type: ignore[union-attr]
            return f"{tree}: {count} requests, {total / count:,.0f} instructions per request"
        before = _cpu_seconds(process.pid)
        count = _load(url, seconds, gateway, rate, script)
        spent = _cpu_seconds(process.pid) - before
        return f"{tree}: {count} requests ({count / seconds:,.0f}/s), {spent / count * 1e6:.1f} us CPU per request"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", type=Path, help="a source tree (repeatable; default: this one)")
    parser.add_argument("--path", default="/pets/1")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--callgrind", action="store_true", help="count instructions with valgrind instead")
    parser.add_argument("--gateway", action="store_true", help="measure the LLM gateway in front of a mock backend")
    parser.add_argument("--rate", type=float, help="a fixed rate (stress/loadgen.c) instead of wrk's closed loop")
    args = parser.parse_args()
    trees = args.tree or [ROOT]
    for _ in range(1 if args.callgrind else args.rounds):
        for tree in trees:
            print(measure(tree.resolve(), args.path, args.seconds, args.callgrind, args.gateway, args.rate), flush=True)


if __name__ == "__main__":
    main()
