"""`trio-router run` as a user runs it: a real process, real signals, real HTTP clients."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


class ServerProcess:
    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = ("run", "--port", "0"),
        cwd: Path = ROOT,
    ) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trio_router", *command, *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_log(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}; got:\n{''.join(self.lines)}")

    def url(self) -> str:
        return self.wait_for_log(r"(http://127\.0\.0\.1:\d+)").group(1)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.close()
        return code

    def close(self) -> None:
        """Release the pipe once the process is gone and its last lines are read."""
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextmanager
def running(*args: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    server = ServerProcess(*args, env=env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        server.close()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`trio-router ARGS` to completion (for commands that exit by themselves)."""
    return subprocess.run(
        [sys.executable, "-m", "trio_router", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_run_serves_the_reference_app_and_drains_on_sigterm() -> None:
    with running() as server:
        url = server.url()
        reply = httpx.get(url + "/health")
        assert reply.status_code == 200
        assert reply.json() == {"status": "ok"}
        created = httpx.post(url + "/pets", json={"kind": "cat", "name": "Tom"})
        assert created.status_code == 201
        assert server.stop() == 0
        assert any("draining" in line for line in server.lines)
        assert not any("Traceback" in line for line in server.lines)


def test_in_flight_request_finishes_during_drain_with_connection_close() -> None:
    with running("--handlers", "tests.cli_app") as server:
        url = server.url()
        result: dict[str, httpx.Response] = {}

        def call() -> None:
            result["reply"] = httpx.get(url + "/sleep?1", timeout=10)

        thread = threading.Thread(target=call)
        thread.start()
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        thread.join(10)
        assert result["reply"].text == "slept"
        assert result["reply"].headers["connection"] == "close"
        assert server.process.wait(10) == 0


def test_second_signal_forces_exit() -> None:
    with running("--handlers", "tests.cli_app", "--shutdown-timeout", "60") as server:
        url = server.url()

        def doomed_call() -> None:
            with contextlib.suppress(httpx.TransportError):  # the server is killed under it
                httpx.get(url + "/sleep?60", timeout=70)

        thread = threading.Thread(target=doomed_call, daemon=True)
        thread.start()
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_log("draining")
        time.sleep(0.2)
        assert server.process.poll() is None  # still draining the 60 s request
        assert server.stop(signal.SIGTERM, timeout=5) == -signal.SIGTERM


def test_busy_port_is_one_clear_line() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli("run", "--port", str(port))
    assert result.returncode == 1
    assert f"trio-router: cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "70000"], {}, "invalid setting --port / TRIO_ROUTER_PORT"),
        (["--request-timeout", "soon"], {}, "invalid setting --request-timeout"),
        ([], {"TRIO_ROUTER_WORKERS": "0"}, "invalid setting --workers / TRIO_ROUTER_WORKERS"),
        (["--handlers", "no_such_module"], {}, "no handlers module 'no_such_module'"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        (["--handlers", "handlers/gateway.py"], {}, "drop the .py (--handlers handlers.gateway)"),
        (["--spec", "specs/gateway.yaml"], {}, "--spec specs/gateway.yaml needs the handlers it is served with"),
        (["--handlers", "tests.conflict_app"], {}, "'/pets/{pet_id}' and '/pets/{name}' match the same paths"),
        (["--config", "/nonexistent/server.toml"], {}, "cannot read config file /nonexistent/server.toml"),
        (["--guardrails", '{"blocked": [{"name": "x", "pattern": "a+"}]}'], {}, "'x' can match text of unbounded"),
        (["--guardrail-sinks", '["syslog"]'], {}, "guardrail sink 'syslog': expected log, json:"),
        (["--guardrail-sinks", '["cef:/nonexistent/v.cef"]'], {}, "guardrail sink /nonexistent/v.cef: No such file"),
    ],
)
def test_bad_settings_are_one_clear_line(args: list[str], env: dict[str, str], message: str) -> None:
    result = run_cli("run", *args, env=env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_config_file_from_the_flag_and_an_unknown_key(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("max-body-bytes = 10\n")
    with running("--config", str(config)) as server:
        assert httpx.post(server.url() + "/pets", json={"name": "a long enough name"}).status_code == 413
        server.stop()
    config.write_text("max_body_bites = 10\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert "unknown setting 'max_body_bites'" in result.stderr


def test_guardrails_from_a_config_file_reach_the_sinks(tmp_path: Path) -> None:
    config, verdicts = tmp_path / "server.yaml", tmp_path / "verdicts.jsonl"
    config.write_text(
        f"guardrail-sinks: ['json:{verdicts}']\n"
        "guardrails:\n  governance:\n    - {name: secrecy, keywords: [top secret], action: redact}\n"
    )
    with running("--config", str(config)) as server:
        httpx.post(server.url() + "/pets", json={"kind": "cat", "name": "Tom", "tag": "Top  Secret cat"})
        events = httpx.get(server.url() + "/pets/events").text
        server.stop()
    assert '"tag":"[REDACTED:secrecy] cat"' in events
    assert json.loads(verdicts.read_text())["rule"] == "governance.secrecy"


def test_environment_sets_and_the_flag_wins() -> None:
    env = {"TRIO_ROUTER_MAX_BODY_BYTES": "10", "TRIO_ROUTER_KEEPALIVE_TIMEOUT": "7"}
    with running(env=env) as server:
        assert httpx.post(server.url() + "/pets", json={"name": "a long enough name"}).status_code == 413
        server.stop()
    with running("--max-body-bytes", "1000", env=env) as server:
        assert httpx.post(server.url() + "/pets", json={"kind": "dog", "name": "a long enough name"}).status_code == 201
        server.stop()


def _pids(url: str, count: int) -> set[int]:
    pids = set()
    for _ in range(count):
        with httpx.Client() as client:  # a new connection each time, so the kernel picks a worker
            pids.add(client.get(url + "/pid").json()["pid"])
    return pids


def _two_workers_listening(server: ServerProcess) -> str:
    """Wait for the supervisor and both workers; return the shared URL."""
    port = server.wait_for_log(r"starting 2 workers on 127\.0\.0\.1:(\d+)").group(1)
    for worker in ("0", "1"):
        server.wait_for_log(rf'listening on .*"worker": "{worker}"')
    return f"http://127.0.0.1:{port}"


def test_workers_share_the_port_restart_after_a_crash_and_drain_on_sigterm() -> None:
    with running("--handlers", "tests.cli_app", "--workers", "2") as server:
        url = _two_workers_listening(server)
        deadline = time.monotonic() + 20
        pids: set[int] = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            pids |= _pids(url, 20)
        assert len(pids) == 2, "both workers should get connections"
        assert server.process.pid not in pids

        victim = pids.pop()
        os.kill(victim, signal.SIGKILL)
        server.wait_for_log("restarting")
        deadline = time.monotonic() + 20
        fresh: set[int] = set()
        while time.monotonic() < deadline and not (fresh - pids - {victim}):
            try:
                fresh |= _pids(url, 10)
            except httpx.TransportError:
                time.sleep(0.1)
        assert fresh - pids - {victim}, "a new worker replaced the killed one"
        assert victim not in _pids(url, 10)
        assert server.stop() == 0


def test_diagnose_reports_bytes_per_suspended_handler() -> None:
    result = run_cli("diagnose", "--count", "300")
    assert result.returncode == 0, result.stderr
    assert re.search(r"per sync handler .*: [\d,]+ bytes traced", result.stdout)
    assert re.search(r"greenlet's share of RSS over async code: -?[\d,]+ bytes", result.stdout)


def test_metrics_add_up_across_workers() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with running("--handlers", "tests.cli_app", "--workers", "2") as server:
        url = _two_workers_listening(server)
        deadline = time.monotonic() + 20
        pids: set[int] = set()
        sent = 0
        while len(pids) < 2 and time.monotonic() < deadline:
            pids |= _pids(url, 10)
            sent += 10
        assert len(pids) == 2
        time.sleep(1.5)  # a snapshot interval: each worker has shared its counts

        def pid_requests() -> float:
            body = httpx.get(url + "/metrics").text
            return sum(
                sample.value
                for family in text_string_to_metric_families(body)
                for sample in family.samples
                if sample.name == "trio_router_requests_total" and sample.labels["operation"] == "pid"
            )

        # Whichever worker answers, it reports the requests both served.
        assert [pid_requests() for _ in range(6)] == [sent] * 6
        assert server.stop() == 0


def test_a_handlers_module_that_fails_to_import_is_one_line_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "loans_app.py").write_text("import os\n\n\ndef list_loans():\n    return []\n\nRATE = undefined_rate\n")
    command = [sys.executable, "-m", "trio_router", "check", "--spec", str(ROOT / "specs" / "petstore.yaml")]
    quiet = subprocess.run(
        [*command, "--handlers", "loans_app"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert quiet.returncode == 1
    assert quiet.stderr.strip() == (
        "trio-router: cannot import handlers 'loans_app':"
        " NameError: name 'undefined_rate' is not defined (loans_app.py:7)"
    )
    debug = subprocess.run(
        [*command, "--handlers", "loans_app", "--log-level", "debug"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "Traceback" in debug.stderr and "undefined_rate" in debug.stderr


# A sitecustomize that hides httptools from imports, as on a base install without the fast extra.
_NO_HTTPTOOLS = """
import importlib.abc, sys
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "httptools" or name.startswith("httptools."):
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, _Hide())
"""


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_run_serves_the_reference_app_on_either_parser(parser: str) -> None:
    with running("--http", parser) as server:
        server.wait_for_log(rf"HTTP parser {parser}")
        url = server.url()
        pet = httpx.get(f"{url}/pets/1")
        assert pet.status_code == 200 and pet.json()["id"] == 1
        refused = httpx.get(f"{url}/pets/0")  # below the spec's minimum: the same problem on both
        assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
        assert server.stop() == 0


def test_without_httptools_auto_is_h11_and_asking_for_it_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(_NO_HTTPTOOLS)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = run_cli("run", "--http", "httptools", env=env)
    assert result.returncode == 1
    assert "http: httptools needs httptools installed: pip install 'trio-router[fast]'" in result.stderr
    assert "Traceback" not in result.stderr
    with running(env=env) as server:
        server.wait_for_log(r"HTTP parser h11")
        assert httpx.get(f"{server.url()}/health").status_code == 200
        assert server.stop() == 0
