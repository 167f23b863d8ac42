"""Side-by-side throughput of trio-router and its anchors, in one run.

    python stress/bench.py [--suite core|sync|openapi|post|not-found|invalid] [--duration 10]
                           [--connections 64] [--rounds 3]

Suite "core": trio-router against the bare trio + h11 floor (same response bytes).
Suite "sync": trio-router's sync (greenlet) handler, with and without greenlet pooling,
against FastAPI's sync (threadpool) and async handlers on uvicorn (`pip install -e '.[bench]'`).
Suite "openapi": the petstore's spec-validated GET /pets/{pet_id} against FastAPI async (pydantic
path parameter and response model) and Connexion 3 (request and response validation).
Suites "post", "not-found", "invalid": a JSON body validated and stored (201), a 404 and a 400
from parameter validation, on trio-router, FastAPI async and Connexion 3.

Servers run one at a time, pinned to CPU 0 while wrk runs on CPU 1 (when taskset exists),
alternating over several rounds so drift on a noisy 2-core box hits all alike; the table
reports medians and ratios to the suite's first server.
Benchmarks are not tests: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from servers import free_port, wait_for_port  # stress/ runs as scripts: its modules import by name

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float


def _pinned(cpu: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") else command


def _to_ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _post_script(body: str) -> str:
    """A wrk Lua script sending ``body`` as a JSON POST."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n')
        script.write('wrk.headers["Content-Type"] = "application/json"\n')
    return script.name


def run_wrk(port: int, path: str, connections: int, duration: float, body: str | None = None) -> Sample:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", f"http://127.0.0.1:{port}{path}"]
    if body is not None:
        command[1:1] = ["-s", _post_script(body)]
    output = subprocess.run(_pinned(1, command), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _to_ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _to_ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", output)
    if errors:
        print(f"  wrk reported: {errors.group(0)}", file=sys.stderr)
    return Sample(rps, p50, p99)


def _trio_router(handlers: str, *flags: str) -> Callable[[int], list[str]]:
    return lambda port: [
        sys.executable,
        "-m",
        "trio_router",
        "run",
        "--port",
        str(port),
        "--handlers",
        handlers,
        *flags,
    ]


def _uvicorn(path: str, app: str = "stress.anchors.fastapi_app:app") -> Server:
    return Server(
        lambda port: [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        path,
    )


@dataclass(frozen=True)
class Server:
    command: Callable[[int], list[str]]
    path: str = "/health"
    body: str | None = None  # sent as a JSON POST when given


NEW_PET = '{"kind": "cat", "name": "Tom"}'
PETSTORE = _trio_router("handlers.petstore", "--no-access-log")
CONNEXION = "stress.anchors.connexion_app:app"


def _scenario(label: str, path: str, body: str | None = None) -> dict[str, Server]:
    """One scenario of the comparison on trio-router, FastAPI async and Connexion 3."""
    fastapi, connexion = _uvicorn(path), _uvicorn(path, CONNEXION)
    return {
        f"trio-router, {label}": Server(PETSTORE, path, body),
        f"FastAPI async, {label}": Server(fastapi.command, path, body),
        f"Connexion 3, {label}": Server(connexion.command, path, body),
    }


SCENARIOS = {
    "post": _scenario("POST /pets (JSON body validated, 201)", "/pets", NEW_PET),
    "not-found": _scenario("GET /pets/999 (404)", "/pets/999"),
    "invalid": _scenario("GET /pets/0 (below minimum: 400, FastAPI 422)", "/pets/0"),
}


SERVERS: dict[str, Server] = {
    "trio + h11 floor": Server(lambda port: [sys.executable, str(ROOT / "stress" / "floor.py"), str(port)]),
    # The bare route returns the floor's bytes: the ratio is the framework's own cost.
    "trio-router, bare route": Server(_trio_router("stress.bare_app")),
    # The reference app's sync handler returns a dict: a pooled greenlet and JSON encoding on top.
    "trio-router, petstore /health": Server(_trio_router("handlers.petstore")),
    # For the FastAPI comparison: uvicorn runs with --no-access-log, so trio-router does too.
    "trio-router sync handler, no access log": Server(_trio_router("handlers.petstore", "--no-access-log")),
    "trio-router sync handler, no access log, no greenlet pooling": Server(
        _trio_router("handlers.petstore", "--no-access-log", "--no-pool-greenlets")
    ),
    "FastAPI sync (threadpool), uvicorn": _uvicorn("/health"),
    "FastAPI async, uvicorn": _uvicorn("/health-async"),
    # Suite "openapi": one spec-validated operation (path parameter in, schema-checked JSON out).
    "trio-router, petstore GET /pets/1, full validation": Server(
        _trio_router("handlers.petstore", "--no-access-log"), "/pets/1"
    ),
    "trio-router, petstore GET /pets/1, response validation off": Server(
        _trio_router("handlers.petstore", "--no-access-log", "--response-validation", "off"), "/pets/1"
    ),
    "FastAPI async, GET /pets/1 (pydantic), uvicorn": _uvicorn("/pets/1"),
    "Connexion 3, GET /pets/1 (validated), uvicorn": _uvicorn("/pets/1", "stress.anchors.connexion_app:app"),
}

for _servers in SCENARIOS.values():
    SERVERS.update(_servers)

SUITES = {
    **{name: list(servers) for name, servers in SCENARIOS.items()},
    "core": ["trio + h11 floor", "trio-router, bare route", "trio-router, petstore /health"],
    "sync": [
        "trio-router sync handler, no access log",
        "trio-router sync handler, no access log, no greenlet pooling",
        "FastAPI sync (threadpool), uvicorn",
        "FastAPI async, uvicorn",
    ],
    "openapi": [
        "trio-router, petstore GET /pets/1, full validation",
        "trio-router, petstore GET /pets/1, response validation off",
        "FastAPI async, GET /pets/1 (pydantic), uvicorn",
        "Connexion 3, GET /pets/1 (validated), uvicorn",
    ],
}


def measure(name: str, connections: int, duration: float) -> Sample:
    port = free_port()
    server = SERVERS[name]
    process = subprocess.Popen(
        _pinned(0, server.command(port)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        run_wrk(port, server.path, connections, 2, server.body)  # warm-up
        return run_wrk(port, server.path, connections, duration, server.body)
    finally:
        process.terminate()
        process.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--suite", choices=sorted(SUITES), default="core", help="which servers; ratios are to the first"
    )
    args = parser.parse_args()
    names = SUITES[args.suite]
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: `apt-get install wrk` (Debian package)")

    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for round_number in range(1, args.rounds + 1):
        for name in names:
            sample = measure(name, args.connections, args.duration)
            samples[name].append(sample)
            print(f"round {round_number}: {name}: {sample.rps:,.0f} req/s", file=sys.stderr)

    anchor = statistics.median(s.rps for s in samples[names[0]])
    print(f"\nwrk -t1 -c{args.connections} -d{args.duration:g}s, median of {args.rounds} rounds\n")
    print(f"| server | req/s | p50 ms | p99 ms | ratio to {names[0]} |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in samples.items():
        rps = statistics.median(s.rps for s in runs)
        p50 = statistics.median(s.p50_ms for s in runs)
        p99 = statistics.median(s.p99_ms for s in runs)
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {rps / anchor:.2f}x |")


if __name__ == "__main__":
    main()
