"""Usage spools and their export, on real files: a spool whose owner died is adopted and
exported without duplicating what reached the sink before the crash; a spool whose owner is
alive is left alone; a sink that fails is retried and nothing is lost; `trio-router usage`
summarises what was exported."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from handlers.gateway.tenancy.config import UsageConfig
from handlers.gateway.tenancy.cost import Tokens
from handlers.gateway.tenancy.usage import UsageLog, _RecordIds, _Timestamps, usage_record
from handlers.gateway.tenancy.usage_sinks import JsonlSink
from trio_router import App

ROOT = Path(__file__).resolve().parent.parent


def record(tenant: str = "acme", model: str = "m", cost: float = 0.001, **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": "r",
        "tenant": tenant,
        "key_id": "k",
        "model": model,
        "backend": "b",
        "endpoint": "/v1/chat/completions",
        "cost": cost,
        "cost_estimated": cost,
        "latency_ms": 1.0,
        "status": 200,
        "outcome": "ok",
        "attempts": 1,
        "stream": False,
        "guardrails": {},
        "idempotency_key": None,
        **extra,
    }
    return usage_record(tokens=Tokens(10, 5), started_at=1_800_000_000.0, degraded=[], **fields)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_an_orphaned_spool_is_exported_once_even_after_a_crash_mid_export(tmp_path: Path) -> None:
    spool_dir, sink_path = tmp_path / "spool", tmp_path / "usage.jsonl"
    spool_dir.mkdir()
    records = [record() for _ in range(5)]
    orphan = spool_dir / "spool-dead.jsonl"
    orphan.write_text("".join(json.dumps(r) + "\n" for r in records))
    # the dead owner had exported the first three when it was killed, before saving its offset
    sink_path.write_text("".join(json.dumps(r) + "\n" for r in records[:3]))
    alive = spool_dir / "spool-alive.jsonl"
    alive.write_text(json.dumps(record()) + "\n")
    holder = os.open(alive, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # its owner is alive: not to be touched
    try:
        log = UsageLog(App(), UsageConfig(path=str(sink_path), spool_dir=str(spool_dir)), JsonlSink(str(sink_path)))
        await log.export_round()
    finally:
        os.close(holder)
    assert [r["record_id"] for r in lines(sink_path)] == [r["record_id"] for r in records]
    assert not orphan.exists() and alive.exists()


class FlakySink(JsonlSink):
    """A file sink that fails its first ``failures`` exports."""

    name = "flaky"

    def __init__(self, path: str, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    async def export(self, lines: list[bytes]) -> None:
        if self.failures:
            self.failures -= 1
            raise OSError("the sink is down")
        await super().export(lines)


async def test_a_failing_sink_is_retried_with_backoff_and_nothing_is_lost(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    sink_path = tmp_path / "usage.jsonl"
    config = UsageConfig(path=str(sink_path), spool_dir=str(tmp_path / "spool"), flush_interval=1, max_backoff=8)
    app = App()
    log = UsageLog(app, config, FlakySink(str(sink_path), failures=4))
    written = [record() for _ in range(3)]
    for each in written:
        log.write(each)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(log.run)
        await trio.sleep(1 + 2 + 4 + 8 - 0.5)  # four failed rounds, backing off 1, 2, 4, 8 s
        assert lines(sink_path) == []
        await trio.sleep(1)
        assert [r["record_id"] for r in lines(sink_path)] == [r["record_id"] for r in written]
        log.write(last := record())
        nursery.cancel_scope.cancel()  # shutdown exports what is left
    assert lines(sink_path)[-1]["record_id"] == last["record_id"]
    assert app.stats.counters["gateway_usage_export_failures"] == {("flaky",): 4}
    assert list((tmp_path / "spool").iterdir()) == []  # a clean stop leaves no spool behind


def test_a_record_the_spool_cannot_take_is_logged_and_counted_not_raised(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    app = App()
    log = UsageLog(app, UsageConfig(spool_dir=str(blocked / "spool")), JsonlSink(str(tmp_path / "u.jsonl")))
    log.write(record())
    assert app.stats.counters["gateway_usage_spool_failures"] == {(): 1}
    assert "gateway_usage_records" not in app.stats.counters


def test_the_usage_command_summarises_per_tenant_model_and_day(tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    rows = [
        record("acme", "m1", 0.5),
        record("acme", "m1", 0.25),
        record("beta", "m2", 1.0, status=429, outcome="refused"),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    done = subprocess.run(
        [sys.executable, "-m", "trio_router", "usage", str(path), "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    summary = json.loads(done.stdout)
    assert summary["rows"] == [
        {"tenant": "acme", "model": "m1", "day": "2027-01-15", "requests": 2, "refused": 0, "errors": 0,
         "tokens_in": 20, "tokens_out": 10, "cost": 0.75},
        {"tenant": "beta", "model": "m2", "day": "2027-01-15", "requests": 1, "refused": 1, "errors": 0,
         "tokens_in": 10, "tokens_out": 5, "cost": 1.0},
    ]  # fmt: skip
    assert summary["skipped_lines"] == 1
    table = subprocess.run(
        [sys.executable, "-m", "trio_router", "usage", str(path)], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "acme" in table and "0.750000" in table and "1 line skipped" in table


@given(st.lists(st.floats(min_value=0, max_value=2**33, allow_nan=False), min_size=1, max_size=5))
def test_record_timestamps_are_what_datetime_formats(moments: list[float]) -> None:
    """The per-second cache gives the same text as datetime, in any order of moments."""
    timestamps = _Timestamps()
    for moment in moments:
        expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert timestamps.iso(moment) == expected


def test_record_ids_are_unique_and_a_forked_child_draws_its_own() -> None:
    ids = _RecordIds()
    mine = [ids.next() for _ in range(1000)]
    assert len(set(mine)) == 1000 and all(re.fullmatch("[0-9a-f]{32}", each) for each in mine)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, ids.next().encode())
        os._exit(0)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert from_child[:16] != mine[0][:16] and from_child not in mine
