"""What the gateway adds to a request: the same fixed-rate load against the mock backend
directly and through the gateway (and through LiteLLM's proxy, if installed), all in one run.

    python stress/gateway_overhead.py [--rate 1000] [--seconds 10] [--litellm /path/to/litellm]

The proxy under test (the gateway, or LiteLLM) has CPU 0 to itself; the mock backend and the
load generator share CPU 1, as a backend on its own machine would not compete with the gateway.
The load is stress/loadgen.c (built on first use): non-streamed chat completions on 32
keep-alive connections at ``--rate`` per second, each request timed from when it was due, so a
stall is not hidden by sending later. Reported: p50/p90/p99/p99.9 latency per path, the
difference through the gateway, and the gateway's own ``x-router-overhead-ms``; then each
proxy's capacity (wrk's closed loop, 64 connections: answers per second).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
from loadgen import fixed_rate  # stress/ runs as scripts: modules import by name
from servers import free_port, free_port_pair, wait_for_port

ROOT = Path(__file__).resolve().parent.parent

BODY = {"model": "mock-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
POINTS = ("p50", "p90", "p99", "p99.9")
GATEWAY_CPU, BACKEND_CPU = 0, 1


@contextlib.contextmanager
def process(
    args: list[str], port: int, env: dict[str, str] | None = None, startup: float = 20, cpu: int = GATEWAY_CPU
) -> Iterator[subprocess.Popen[bytes]]:
    if shutil.which("taskset"):
        args = ["taskset", "-c", str(cpu), *args]
    proc = subprocess.Popen(
        args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, startup)
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def load(
    url: str, rate: float, seconds: float, headers: dict[str, str] | None = None, capture: str = "x-router-overhead-ms"
) -> dict[str, Any]:
    """loadgen's report for ``rate`` chat completions a second (after a 2 s warm-up)."""
    headers = {"content-type": "application/json", **(headers or {})}
    return fixed_rate(
        url, rate, seconds, body=json.dumps(BODY).encode(), headers=headers, capture=capture, cpu=BACKEND_CPU
    )


def throughput(url: str, headers: dict[str, str] | None = None, seconds: float = 5) -> str:
    """Closed-loop capacity: wrk with 64 connections, as fast as answers come (2xx only count)."""
    wrk_headers = {"Content-Type": "application/json", **(headers or {})}
    script = "wrk.method = 'POST'\nwrk.body = '" + json.dumps(BODY) + "'\n"
    script += "".join(f"wrk.headers['{name}'] = '{value}'\n" for name, value in wrk_headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script)
        lua.flush()
        args = ["wrk", "-t1", "-c64", f"-d{seconds:g}s", "-s", lua.name, url]
        if shutil.which("taskset"):
            args = ["taskset", "-c", str(BACKEND_CPU), *args]
        output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    total = int(output.split(" requests in")[0].split()[-1])
    failed = int(output.split("Non-2xx or 3xx responses:")[1].split()[0]) if "Non-2xx" in output else 0
    return f"{(total - failed) / seconds:,.0f} answers/s" + (f" ({failed} failed)" if failed else "")


def sequential(direct: str, gateway: str, gateway_port: int, count: int = 300) -> str:
    """One request at a time: where a single request's time goes, without queueing."""
    with httpx.Client() as client:
        timings = {}
        for name, url in (("direct", direct), ("gateway", gateway)):
            start = time.perf_counter()
            for _ in range(count):
                client.post(url, json=BODY)
            timings[name] = (time.perf_counter() - start) / count * 1000
        upstream = client.get(f"http://127.0.0.1:{gateway_port}/stats").json()["backends"][0]["latency_ewma_ms"]
    return (
        f"sequential, {count} requests: {timings['direct']:.2f} ms direct, {timings['gateway']:.2f} ms through the"
        f" gateway, of which the upstream's answer (EWMA) {upstream:.2f} ms"
    )


def run(rate: float, seconds: float, litellm: str | None) -> None:
    mock_port, gateway_port = free_port_pair(), free_port()
    mock = [sys.executable, "-m", "trio_router", "mock-backend", "--port", str(mock_port), "--tokens-per-second", "0"]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as scratch, process(mock, mock_port, cpu=BACKEND_CPU):
        config = Path(scratch) / "gateway.yaml"
        backend = {"name": "mock", "url": f"http://127.0.0.1:{mock_port}", "models": ["mock-small"]}
        config.write_text(yaml.safe_dump({"backends": [backend]}))  # defaults: open, usage records to JSONL
        direct_url = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
        results["direct to the mock backend"] = load(direct_url, rate, seconds)
        gateway = [sys.executable, "-m", "trio_router", "run", "--handlers", "handlers.gateway", "--spec",
                   "specs/gateway.yaml", "--port", str(gateway_port), "--no-access-log"]  # fmt: skip
        with process(gateway, gateway_port, {"GATEWAY_CONFIG": str(config)}):
            url = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
            results["through the trio-router gateway"] = load(url, rate, seconds)
            probe = sequential(direct_url, url, gateway_port)
            capacity = {"trio-router gateway": throughput(url)}
        if litellm:
            litellm_port = free_port()
            litellm_config = Path(scratch) / "litellm.yaml"
            params = {"model": "openai/mock-small", "api_base": f"http://127.0.0.1:{mock_port}/v1", "api_key": "x"}
            model = {"model_name": "mock-small", "litellm_params": params}
            litellm_config.write_text(yaml.safe_dump({"model_list": [model]}))
            args = [litellm, "--config", str(litellm_config), "--port", str(litellm_port), "--num_workers", "1"]
            key = "sk-benchmark-only"
            with process(args, litellm_port, {"LITELLM_MASTER_KEY": key}, startup=120):
                url = f"http://127.0.0.1:{litellm_port}/v1/chat/completions"
                results["through LiteLLM's proxy"] = load(url, rate, seconds, {"authorization": f"Bearer {key}"})
                capacity["LiteLLM's proxy"] = throughput(url, {"Authorization": f"Bearer {key}"})
    print(f"{rate:g} requests/s for {seconds:g} s, non-streamed chat completions, 32 keep-alive connections")
    print(f"{'path':40} " + " ".join(f"{point + ' ms':>9}" for point in POINTS) + f" {'errors':>7}")
    direct = results["direct to the mock backend"]["latency_ms"]
    for name, report in results.items():
        latency = report["latency_ms"]
        print(f"{name:40} " + " ".join(f"{latency[point]:9.2f}" for point in POINTS) + f" {report['errors']:7d}")
        if name != "direct to the mock backend":
            print(f"{'  added to the direct path':40} " + " ".join(f"{latency[p] - direct[p]:9.2f}" for p in POINTS))
        own = report["captured"]
        if own["max"]:
            print(f"{'  x-router-overhead-ms (own time)':40} " + " ".join(f"{own[point]:9.3f}" for point in POINTS))
    print(probe)
    print("capacity, wrk -c64 closed loop on the backend's core: " + "; ".join(f"{k} {v}" for k, v in capacity.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--litellm", default=shutil.which("litellm"), help="the litellm CLI (default: on PATH)")
    args = parser.parse_args()
    if shutil.which("taskset") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {BACKEND_CPU})  # this script's own work stays off the proxy's core
    if not args.litellm:
        print("LiteLLM is not installed here (pip install 'litellm[proxy]'): its row is left out")
    run(args.rate, args.seconds, args.litellm)


if __name__ == "__main__":
    main()
