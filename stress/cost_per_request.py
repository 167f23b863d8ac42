"""What one request costs the server, measured steadily enough to compare small changes on a
noisy 2-core box, where req/s moves by +-10% between runs of the same code.

    python stress/cost_per_request.py [--tree DIR ...] [--path /pets/1] [--seconds 8] [--callgrind]

For each source tree (default: this one; give two to compare a change), a trio-router server
(the petstore, access log off) is started from that tree, pinned to CPU 0, and driven by
``wrk -c64`` on CPU 1. Reported per tree: requests, server CPU per request (user + system time
from /proc over the run) and, with ``--callgrind``, instructions per request counted by valgrind
(collection switched on only while wrk runs: exactly repeatable, whatever else the machine does).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from servers import free_port, wait_for_port  # stress/ runs as scripts: modules import by name

ROOT = Path(__file__).resolve().parent.parent


def _wrk(port: int, path: str, seconds: float) -> int:
    output = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{seconds:g}s", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(tree: Path, path: str, seconds: float, callgrind: bool) -> str:
    port = free_port()
    server = [sys.executable, "-m", "trio_router", "run", "--handlers", "handlers.petstore", "--no-access-log",
              "--port", str(port)]  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        if callgrind:
            server = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *server]
        process = subprocess.Popen(
            ["taskset", "-c", "0", *server], cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            wait_for_port(port, 300)
            _wrk(port, path, 3 if callgrind else 2)  # warm up
            if callgrind:
                subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], capture_output=True, check=True)
                count = _wrk(port, path, seconds)
                subprocess.run(["callgrind_control", "-d", str(process.pid)], capture_output=True, check=True)
                dump = next(name for name in glob.glob(f"{out}*") if name != str(out))
                total = int(re.search(r"^totals: (\d+)", Path(dump).read_text(), re.M).group(1))  # type: ignore[union-attr]
                return f"{tree}: {count} requests, {total / count:,.0f} instructions per request"
            before = _cpu_seconds(process.pid)
            count = _wrk(port, path, seconds)
            spent = _cpu_seconds(process.pid) - before
            return f"{tree}: {count} requests ({count / seconds:,.0f}/s), {spent / count * 1e6:.1f} us CPU per request"
        finally:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", type=Path, help="a source tree (repeatable; default: this one)")
    parser.add_argument("--path", default="/pets/1")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--callgrind", action="store_true", help="count instructions with valgrind instead")
    args = parser.parse_args()
    trees = args.tree or [ROOT]
    for _ in range(1 if args.callgrind else args.rounds):
        for tree in trees:
            print(measure(tree.resolve(), args.path, args.seconds, args.callgrind), flush=True)


if __name__ == "__main__":
    main()
