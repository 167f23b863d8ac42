"""What the gateway adds to a request: the same open-loop load at a fixed rate against the mock
backend directly and through the gateway (and through LiteLLM's proxy, if installed), all in
one run.

    python stress/gateway_overhead.py [--rate 1000] [--seconds 10] [--litellm /path/to/litellm]

Each server runs in its own process, all pinned to CPU 0; the load generator (this process, on
CPU 1) sends non-streamed chat completions on keep-alive connections at ``--rate`` per second,
each request timed from its scheduled start (so a stall is not hidden by sending later).
Reported: p50/p90/p99 latency per path, the difference through the gateway, and the gateway's
own ``x-router-overhead-ms``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import trio
import yaml
from servers import free_port, free_port_pair, wait_for_port  # stress/ runs as scripts: modules import by name

ROOT = Path(__file__).resolve().parent.parent

BODY = {"model": "mock-small", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}


@contextlib.contextmanager
def process(
    args: list[str], port: int, env: dict[str, str] | None = None, startup: float = 20
) -> Iterator[subprocess.Popen[bytes]]:
    if shutil.which("taskset"):  # servers on CPU 0, this load generator on CPU 1 (see main)
        args = ["taskset", "-c", "0", *args]
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


async def load(
    url: str,
    rate: float,
    seconds: float,
    headers: dict[str, str] | None = None,
    connections: int = 32,
    header: str = "x-router-overhead-ms",
) -> tuple[list[float], list[float]]:
    """Latencies (ms, from the scheduled start) and the values of ``header`` where answers had it."""
    latencies: list[float] = []
    overheads: list[float] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        for _ in range(50):  # warm up connections and pools
            await client.post(url, json=BODY)
        start = trio.current_time()
        total = int(rate * seconds)

        async def one(scheduled: float) -> None:
            reply = await client.post(url, json=BODY)
            latencies.append((trio.current_time() - scheduled) * 1000)
            if header in reply.headers:
                overheads.append(float(reply.headers[header]))

        async with trio.open_nursery() as nursery:
            for n in range(total):
                scheduled = start + n / rate
                await trio.sleep_until(scheduled)
                nursery.start_soon(one, scheduled)
    return latencies, overheads


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
        f" gateway, of which the upstream hop (time to its response head, EWMA) {upstream:.2f} ms"
    )


def quantiles(values: list[float], points: tuple[int, int, int] = (50, 90, 99)) -> tuple[float, float, float]:
    cuts = statistics.quantiles(values, n=100)
    first, second, third = (cuts[point - 1] for point in points)
    return first, second, third


async def run(rate: float, seconds: float, litellm: str | None) -> None:
    mock_port, gateway_port = free_port_pair(), free_port()
    mock = [sys.executable, "-m", "trio_router", "mock-backend", "--port", str(mock_port), "--tokens-per-second", "0"]
    results: dict[str, tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory() as scratch, process(mock, mock_port):
        config = Path(scratch) / "gateway.yaml"
        backend = {"name": "mock", "url": f"http://127.0.0.1:{mock_port}", "models": ["mock-small"]}
        config.write_text(yaml.safe_dump({"backends": [backend]}))
        results["direct to the mock backend"] = await load(
            f"http://127.0.0.1:{mock_port}/v1/chat/completions", rate, seconds
        )
        gateway = [sys.executable, "-m", "trio_router", "run", "--handlers", "handlers.gateway", "--spec",
                   "specs/gateway.yaml", "--port", str(gateway_port), "--no-access-log"]  # fmt: skip
        with process(gateway, gateway_port, {"GATEWAY_CONFIG": str(config)}):
            url = f"http://127.0.0.1:{gateway_port}/v1/chat/completions"
            results["through the trio-router gateway"] = await load(url, rate, seconds)
            direct_url = f"http://127.0.0.1:{mock_port}/v1/chat/completions"
            probe = await trio.to_thread.run_sync(sequential, direct_url, url, gateway_port)
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
                auth = {"authorization": f"Bearer {key}"}
                results["through LiteLLM's proxy"] = await load(url, rate, seconds, auth)
    print(f"{rate:g} requests/s for {seconds:g} s, non-streamed chat completions, 32 keep-alive connections")
    print(f"{'path':40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>7}")
    direct = quantiles(results["direct to the mock backend"][0])
    for name, (latencies, overheads) in results.items():
        p50, p90, p99 = quantiles(latencies)
        print(f"{name:40} {p50:8.2f} {p90:8.2f} {p99:8.2f} {int(rate * seconds) - len(latencies):7d}")
        if name != "direct to the mock backend":
            added = (p50 - direct[0], p90 - direct[1], p99 - direct[2])
            print(f"{'  added to the direct path':40} {added[0]:8.2f} {added[1]:8.2f} {added[2]:8.2f}")
        if overheads:
            o50, o90, o99 = quantiles(overheads)
            print(f"{'  x-router-overhead-ms (own time)':40} {o50:8.3f} {o90:8.3f} {o99:8.3f}")
    print(probe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--litellm", default=shutil.which("litellm"), help="the litellm CLI (default: on PATH)")
    args = parser.parse_args()
    if shutil.which("taskset") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})  # the load generator keeps to CPU 1, the servers to CPU 0
    if not args.litellm:
        print("LiteLLM is not installed here (pip install 'litellm[proxy]'): its row is left out")
    trio.run(run, args.rate, args.seconds, args.litellm)


if __name__ == "__main__":
    main()
