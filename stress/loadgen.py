"""The fixed-rate load generator (loadgen.c), built on first use with the machine's C compiler.

from loadgen import fixed_rate
result = fixed_rate("http://127.0.0.1:8080/v1/chat/completions", rate=1000, seconds=10, body=b"{...}")
result["latency_ms"]["p99"]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "loadgen.c"
BUILT = Path(tempfile.gettempdir()) / f"trio-router-loadgen-{os.getuid()}"


def binary() -> Path:
    """The compiled load generator, rebuilt when the source is newer."""
    if BUILT.exists() and BUILT.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BUILT
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("the fixed-rate load generator needs a C compiler (cc or gcc)")
    subprocess.run([compiler, "-O2", "-Wall", "-o", str(BUILT), str(SOURCE)], check=True)
    return BUILT


def fixed_rate(
    url: str,
    rate: float,
    seconds: float,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    connections: int = 32,
    warmup: float = 2,
    capture: str | None = None,
    cpu: int | None = 1,
) -> dict[str, Any]:
    """Run one fixed-rate load (on ``cpu``); the generator's report (see loadgen.c)."""
    args = [str(binary()), "--url", url, "--rate", f"{rate:g}", "--seconds", f"{seconds:g}"]
    args += ["--connections", str(connections), "--warmup", f"{warmup:g}"]
    for name, value in (headers or {}).items():
        args += ["--header", f"{name}: {value}"]
    if capture:
        args += ["--capture", capture]
    if cpu is not None and shutil.which("taskset"):
        args = ["taskset", "-c", str(cpu), *args]
    with tempfile.NamedTemporaryFile(suffix=".body") as body_file:
        if body is not None:
            body_file.write(body)
            body_file.flush()
            args += ["--body", body_file.name]
        output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    report: dict[str, Any] = json.loads(output)
    return report
