"""An adaptive concurrency ramp against `trio-router run` (the Pet Store's spec-validated
GET /pets/1), in the format of BRRTRouter's whitepaper tables.

    python stress/ramp.py [--steps 500,1000,2000,4500,10000] [--hold 10] [--out stress/out]

Each step holds that many keep-alive connections (wrk, two threads) for ``--hold`` seconds and
records requests, throughput, p50/p75/p98/p99 and failures (socket errors and non-2xx); the ramp
stops after the first step with more than 0.5% failures. The server runs pinned to CPU 0 and wrk
to CPU 1 when taskset exists. Writes ramp.md (the table) and, if matplotlib is installed
(`pip install matplotlib`), ramp.png (throughput and p99 against concurrency) to ``--out``.
The file-descriptor limit is raised to the hard limit for both processes.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from servers import free_port, wait_for_port  # stress/ runs as scripts: its modules import by name

ROOT = Path(__file__).resolve().parent.parent
FAILURE_LIMIT = 0.005
# wrk's Lua hook: the figures wrk's own report lacks (p75, p98) and the failure counts, parsed below.
REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d socket_errors=%d non2xx=%d duration_us=%d p50=%d p75=%d p98=%d p99=%d\\n",
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status, summary.duration,
    latency:percentile(50), latency:percentile(75), latency:percentile(98), latency:percentile(99)))
end
"""


@dataclass
class Step:
    users: int
    requests: int
    throughput: float
    p50_ms: float
    p75_ms: float
    p98_ms: float
    p99_ms: float
    failures: int

    @property
    def failure_ratio(self) -> float:
        return self.failures / max(self.requests, 1)


def _raise_fd_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _pinned(cpu: int, command: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *command] if shutil.which("taskset") else command


def run_step(url: str, users: int, hold: float, script: Path) -> Step:
    command = _pinned(1, ["wrk", "-t2", f"-c{users}", f"-d{hold:g}s", "--timeout", "10s", "-s", str(script), url])
    output = subprocess.run(command, capture_output=True, text=True, check=True, preexec_fn=_raise_fd_limit).stdout
    match = re.search(r"RESULT (.*)", output)
    if match is None:
        raise SystemExit(f"wrk gave no result at {users} connections:\n{output}")
    fields = {key: int(value) for key, value in (pair.split("=") for pair in match.group(1).split())}
    seconds = fields["duration_us"] / 1e6
    return Step(
        users=users,
        requests=fields["requests"],
        throughput=fields["requests"] / seconds,
        p50_ms=fields["p50"] / 1000,
        p75_ms=fields["p75"] / 1000,
        p98_ms=fields["p98"] / 1000,
        p99_ms=fields["p99"] / 1000,
        failures=fields["socket_errors"] + fields["non2xx"],
    )


def table(steps: list[Step]) -> str:
    lines = [
        "| Users | Requests | Throughput (req/s) | p50 (ms) | p75 (ms) | p98 (ms) | p99 (ms) | Failures |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steps:
        lines.append(
            f"| {s.users} | {s.requests} | {s.throughput:,.0f} | {s.p50_ms:.2f} | {s.p75_ms:.2f} | {s.p98_ms:.2f}"
            f" | {s.p99_ms:.2f} | {s.failures} ({s.failure_ratio:.2%}) |"
        )
    return "\n".join(lines) + "\n"


def plot(steps: list[Step], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, throughput_axis = plt.subplots(figsize=(8, 4.5))
    users = [s.users for s in steps]
    throughput_axis.plot(users, [s.throughput for s in steps], "o-", color="tab:blue", label="throughput")
    throughput_axis.set_xscale("log")
    throughput_axis.set_xlabel("concurrent connections")
    throughput_axis.set_ylabel("requests/s", color="tab:blue")
    latency_axis = throughput_axis.twinx()
    latency_axis.plot(users, [s.p99_ms for s in steps], "s--", color="tab:red", label="p99")
    latency_axis.set_ylabel("p99 latency (ms)", color="tab:red")
    figure.suptitle("trio-router, GET /pets/1 (spec-validated), one worker")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="500,1000,2000,4500,10000")
    parser.add_argument("--hold", type=float, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "stress" / "out")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian's package)")
    _raise_fd_limit()
    port = free_port()
    env = {**os.environ, "TRIO_ROUTER_ACCESS_LOG": "false", "TRIO_ROUTER_BACKLOG": "16384"}
    command = _pinned(0, [sys.executable, "-m", "trio_router", "run", "--port", str(port)])
    server = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL, preexec_fn=_raise_fd_limit)
    steps: list[Step] = []
    try:
        wait_for_port(port)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(REPORT)
        url = f"http://127.0.0.1:{port}/pets/1"
        run_step(url, 64, 2, Path(script.name))  # warm-up
        for users in (int(value) for value in args.steps.split(",")):
            step = run_step(url, users, args.hold, Path(script.name))
            steps.append(step)
            print(f"{users:>6} connections: {step.throughput:,.0f} req/s, p99 {step.p99_ms:.1f} ms, "
                  f"failures {step.failures} ({step.failure_ratio:.2%})", flush=True)  # fmt: skip
            if step.failure_ratio > FAILURE_LIMIT:
                print(f"stopping: more than {FAILURE_LIMIT:.1%} failures")
                break
    finally:
        server.terminate()
        server.wait(timeout=30)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ramp.md").write_text(table(steps))
    print(table(steps))
    drawn = plot(steps, args.out / "ramp.png")
    print(f"wrote {args.out / 'ramp.md'}" + (f" and {args.out / 'ramp.png'}" if drawn else " (no matplotlib: no plot)"))


if __name__ == "__main__":
    main()
