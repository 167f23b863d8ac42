"""Side-by-side throughput of trio-router and its anchors, in one run.

    python stress/bench.py [--suite targets|parsers|core|sync|openapi|post|not-found|invalid] [--duration 10]
                           [--connections 64] [--rounds 3]

Suite "targets": the performance issue's targets in one run: the petstore's validated GET
/pets/{pet_id} against FastAPI async and sync, Connexion 3, Starlette on hypercorn's trio worker,
the trio + h11 floor, and the same floor with httptools (what a C parser would buy).
Suite "parsers": the validated GET on `--http httptools` and `--http h11` beside FastAPI async,
Connexion 3 and both floors (issue 20).
Suite "core": trio-router against the bare trio + h11 floor (same response bytes).
Suite "sync": trio-router's sync (greenlet) handler, with and without greenlet pooling,
against FastAPI's sync (threadpool) and async handlers on uvicorn (`pip install -e '.[bench]'`).
Suite "openapi": the petstore's spec-validated GET /pets/{pet_id} against FastAPI async (pydantic
path parameter and response model) and Connexion 3 (request and response validation).
Suites "post", "not-found", "invalid": a JSON body validated and stored (201), a 404 and a 400
from parameter validation, on trio-router, FastAPI async and Connexion 3.

Servers run one at a time, pinned to CPU 0 while wrk runs on CPU 1 (when taskset exists),
alternating over several rounds so drift on a noisy 2-core box hits all alike; the table
reports medians, each server's RSS when idle and at its peak, and how the suite's first server
compares (its req/s divided by each one's).
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
    rss_idle_mb: float = 0.0
    rss_peak_mb: float = 0.0


def _memory_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (the peak so far) of a process, in MB; 0 where /proc is missing."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


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
        *(["--spec", "specs/petstore.yaml"] if handlers == "handlers.petstore" else []),
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
    # Issue 20: the same operation on each HTTP parser.
    "trio-router --http h11, petstore GET /pets/1, full validation": Server(
        _trio_router("handlers.petstore", "--no-access-log", "--http", "h11"), "/pets/1"
    ),
    "trio-router --http httptools, petstore GET /pets/1, full validation": Server(
        _trio_router("handlers.petstore", "--no-access-log", "--http", "httptools"), "/pets/1"
    ),
    "FastAPI async, GET /pets/1 (pydantic), uvicorn": _uvicorn("/pets/1"),
    "Connexion 3, GET /pets/1 (validated), uvicorn": _uvicorn("/pets/1", "stress.anchors.connexion_app:app"),
    "FastAPI sync (threadpool), GET /pets/1 (pydantic), uvicorn": _uvicorn("/sync/pets/1"),
    "Starlette, GET /pets/1 (checked by hand), hypercorn trio worker": Server(
        lambda port: [
            sys.executable,
            "-m",
            "hypercorn",
            "--worker-class",
            "trio",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "stress.anchors.starlette_app:app",
        ],
        "/pets/1",
    ),
    # What a C parser would buy: the same minimal loop with httptools instead of h11.
    "trio + httptools floor": Server(
        lambda port: [sys.executable, str(ROOT / "stress" / "floor_httptools.py"), str(port)]
    ),
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
    # Issue 7's targets, all in one run: trio-router's validated GET /pets/1 against every anchor.
    "targets": [
        "trio-router, petstore GET /pets/1, full validation",
        "FastAPI async, GET /pets/1 (pydantic), uvicorn",
        "FastAPI sync (threadpool), GET /pets/1 (pydantic), uvicorn",
        "Connexion 3, GET /pets/1 (validated), uvicorn",
        "Starlette, GET /pets/1 (checked by hand), hypercorn trio worker",
        "trio + h11 floor",
        "trio + httptools floor",
    ],
    # Issue 20's targets: both parsers beside the anchors and both floors.
    "parsers": [
        "trio-router --http httptools, petstore GET /pets/1, full validation",
        "trio-router --http h11, petstore GET /pets/1, full validation",
        "FastAPI async, GET /pets/1 (pydantic), uvicorn",
        "Connexion 3, GET /pets/1 (validated), uvicorn",
        "trio + h11 floor",
        "trio + httptools floor",
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
        idle = _memory_mb(process.pid, "VmRSS")
        run_wrk(port, server.path, connections, 2, server.body)  # warm-up
        sample = run_wrk(port, server.path, connections, duration, server.body)
        sample.rss_idle_mb, sample.rss_peak_mb = idle, _memory_mb(process.pid, "VmHWM")
        return sample
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
    print(f"| server | req/s | p50 ms | p99 ms | RSS idle MB | RSS peak MB | {names[0]} ÷ this |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in samples.items():
        rps = statistics.median(s.rps for s in runs)
        p50 = statistics.median(s.p50_ms for s in runs)
        p99 = statistics.median(s.p99_ms for s in runs)
        idle = statistics.median(s.rss_idle_mb for s in runs)
        peak = statistics.median(s.rss_peak_mb for s in runs)
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {idle:.1f} | {peak:.1f} | {anchor / rps:.2f}x |")


if __name__ == "__main__":
    main()
