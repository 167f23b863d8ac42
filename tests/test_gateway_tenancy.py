"""Tenants on the gateway with the in-memory state: API keys (hashed) and signatures, cost
headers and the seatbelt, budgets and rate limits through the openai SDK, idempotency, usage
records (validated against specs/usage-record.schema.json), the admin API for keys and tenants,
and the refusal to run --workers N with in-memory limits."""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
import trio
import yaml

import handlers.gateway as gateway
from tests.conftest import Running, serve
from tests.test_cli import ServerProcess
from tests.test_mock_backend import free_port_pair
from trio_router import App

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "gateway.yaml"
SCHEMA = json.loads((ROOT / "specs" / "usage-record.schema.json").read_text())
KEYS = {name: f"sk-tr-test-{name}-0123456789abcdef" for name in ("acme", "acme-slow", "beta", "signed")}
ADMIN_TOKEN = "admin-secret"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def backend() -> Iterator[dict[str, str]]:
    urls = {}
    processes = []
    try:
        for name, extra in (("fast", ()), ("slow", ("--latency", "1"))):
            port = free_port_pair()
            args = ("--port", str(port), "--name", name, "--models", f"m-{name}", "--tokens-per-second", "0", *extra)
            process = ServerProcess(*args, command=("mock-backend",))
            processes.append(process)
            process.wait_for_log(rf"listening on http://127.0.0.1:{port + 1}")
            urls[name] = f"http://127.0.0.1:{port}"
        yield urls
    finally:
        for process in processes:
            process.stop()


def base_config(tmp_path: Path, backend: dict[str, str]) -> dict[str, Any]:
    return {
        "backends": [
            {"name": "fast", "url": backend["fast"], "models": ["m-fast"]},
            {"name": "slow", "url": backend["slow"], "models": ["m-slow"]},
        ],
        "pricing": {"m-fast": {"input": 1.0, "output": 2.0}, "*": {"input": 1.0, "output": 1.0}},
        "tenants": [
            {
                "name": "acme",
                "rpm": 1000,
                "keys": [
                    {"id": "acme-main", "sha256": digest(KEYS["acme"])},
                    {"id": "acme-slow", "sha256": digest(KEYS["acme-slow"]), "rpm": 2},
                    {"id": "acme-signed", "sha256": digest(KEYS["signed"]), "signed": True},
                ],
            },
            {"name": "beta", "budget": 0.0001, "keys": [{"id": "beta-main", "sha256": digest(KEYS["beta"])}]},
        ],
        "usage": {"path": "usage.jsonl", "spool_dir": "spool", "flush_interval": 0.05},
        "admin": {"port": 0, "token_env": "TEST_GATEWAY_ADMIN"},
    }


@asynccontextmanager
async def serve_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]
) -> AsyncIterator[tuple[Running, str]]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    monkeypatch.setenv("TEST_GATEWAY_ADMIN", ADMIN_TOKEN)
    module = importlib.reload(gateway)
    async with serve(App.from_spec(SPEC, module)) as running:
        yield running, f"http://127.0.0.1:{module.REGISTRY.admin_port}"


def sdk(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


HELLO = [{"role": "user", "content": "hello there"}]


def read_records(path: Path) -> list[dict[str, Any]]:
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    for record in found:
        jsonschema.validate(record, SCHEMA, format_checker=jsonschema.FormatChecker())
    return found


async def records(path: Path, count: int) -> list[dict[str, Any]]:
    """The usage file's records, once it holds at least ``count`` (the exporter runs every 50 ms)."""
    for _ in range(200):
        found = await trio.to_thread.run_sync(read_records, path)
        if len(found) >= count:
            return found
        await trio.sleep(0.05)
    raise AssertionError(f"{path} holds {len(found)} records, not {count}")


async def test_keys_are_required_and_checked_in_openai_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: dict[str, str]
) -> None:
    async with serve_gateway(tmp_path, monkeypatch, base_config(tmp_path, backend)) as (running, _):

        def calls() -> tuple[httpx.Response, openai.AuthenticationError]:
            bare = httpx.post(f"{running.url}/v1/chat/completions", json={"model": "m-fast", "messages": HELLO})
            with pytest.raises(openai.AuthenticationError) as wrong:
                sdk(running.url, "sk-tr-wrong").chat.completions.create(model="m-fast", messages=HELLO)  # type: ignore[arg-type]
            return bare, wrong.value

        bare, wrong = await trio.to_thread.run_sync(calls)
    assert bare.status_code == 401 and bare.headers["www-authenticate"] == 'Bearer realm="gateway"'
    assert bare.json() == {
        "error": {
            "message": "this operation needs credentials",
            "type": "authentication_error",
            "param": None,
            "code": None,
        }
    }
    assert wrong.status_code == 401 and wrong.body["message"] == "the API key is not valid"  # type: ignore[index]


async def test_costs_in_headers_and_usage_records_for_plain_and_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: dict[str, str]
) -> None:
    async with serve_gateway(tmp_path, monkeypatch, base_config(tmp_path, backend)) as (running, _):

        def calls() -> tuple[httpx.Response, list[dict[str, Any]], str]:
            headers = {"authorization": f"Bearer {KEYS['acme']}", "x-request-id": "plain-1"}
            body = {"model": "m-fast", "messages": [{"role": "user", "content": "x" * 40}], "max_tokens": 5}
            plain = httpx.post(f"{running.url}/v1/chat/completions", json=body, headers=headers)
            stream = sdk(running.url, KEYS["acme"]).chat.completions.create(
                model="m-fast",
                messages=[{"role": "user", "content": "write to ann@example.com"}],
                stream=True,
                extra_headers={"x-request-id": "stream-1"},
            )
            chunks = [chunk.model_dump() for chunk in stream]
            text = "".join(c["choices"][0]["delta"]["content"] or "" for c in chunks if c["choices"])
            return plain, chunks, text

        plain, chunks, text = await trio.to_thread.run_sync(calls)
        found = {record["request_id"]: record for record in await records(tmp_path / "usage.jsonl", 2)}
    # 40 characters -> 10 input tokens; max_tokens 5 -> 5 output: 10 * 1 + 5 * 2 micro-units.
    assert plain.headers["x-router-cost-estimated"] == "0.000020"
    usage = plain.json()["usage"]
    actual = (usage["prompt_tokens"] * 1 + usage["completion_tokens"] * 2) / 1e6
    assert float(plain.headers["x-router-cost-actual"]) == pytest.approx(actual)
    assert float(plain.headers["x-router-cost-efficiency"]) == pytest.approx(actual / 0.00002, abs=1e-3)
    assert float(plain.headers["x-router-tenancy-ms"]) >= 0
    summary = [c for c in chunks if c.get("router")]
    # the gateway's summary comes right before [DONE], then the guardrails' own (they see the stream after)
    assert len(summary) == 1 and chunks[-2].get("router") and chunks[-1].get("guardrails")
    assert summary[0]["router"]["tokens_out"] > 0 and summary[0]["router"]["cost_actual"] > 0
    assert "[REDACTED:email]" in text
    record = found["plain-1"]
    assert (record["tenant"], record["key_id"], record["backend"], record["status"], record["outcome"]) == (
        "acme", "acme-main", "fast", 200, "ok"
    )  # fmt: skip
    assert (record["tokens_in"], record["tokens_out"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    streamed = found["stream-1"]
    assert streamed["stream"] is True and streamed["guardrails"]["redact"] == 1
    assert streamed["tokens_out"] == summary[0]["router"]["tokens_out"]
    assert streamed["cost"] == summary[0]["router"]["cost_actual"]


async def test_rate_limits_budgets_and_the_seatbelt_through_the_sdk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: dict[str, str]
) -> None:
    async with serve_gateway(tmp_path, monkeypatch, base_config(tmp_path, backend)) as (running, _):

        def calls() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            limited = sdk(running.url, KEYS["acme-slow"])
            for _ in range(2):
                limited.chat.completions.create(model="m-fast", messages=HELLO)  # type: ignore[arg-type]
            with pytest.raises(openai.RateLimitError) as rate:
                limited.chat.completions.create(model="m-fast", messages=HELLO)  # type: ignore[arg-type]
            seen["rate"] = (rate.value.body, rate.value.response.headers.get("retry-after"))
            # the key's limit is not the tenant's: the tenant's other key still works
            sdk(running.url, KEYS["acme"]).chat.completions.create(model="m-fast", messages=HELLO)  # type: ignore[arg-type]
            with pytest.raises(openai.APIStatusError) as budget:
                long = [{"role": "user", "content": "y" * 400}]
                sdk(running.url, KEYS["beta"]).chat.completions.create(model="m-fast", messages=long)  # type: ignore[arg-type]
            seen["budget"] = (budget.value.status_code, budget.value.body)
            headers = {"authorization": f"Bearer {KEYS['acme']}"}
            body = {"model": "m-fast", "messages": HELLO, "max_tokens": 100}
            for ceiling in ("0.0001", "0.01", "lots"):
                reply = httpx.post(
                    f"{running.url}/v1/chat/completions", json=body, headers={**headers, "x-router-max-cost": ceiling}
                )
                seen[ceiling] = (reply.status_code, reply.json().get("error", {}).get("code"))
            return seen

        seen = await trio.to_thread.run_sync(calls)
        found = await records(tmp_path / "usage.jsonl", 8)
    body, retry_after = seen["rate"]
    assert body["code"] == "rate_limit_exceeded" and body["type"] == "rate_limit_error"
    assert "key's requests per minute" in body["message"]
    assert 1 <= int(retry_after) <= 60
    status, body = seen["budget"]
    assert status == 402 and body["code"] == "budget_exceeded" and body["type"] == "insufficient_quota"
    # max_tokens 100 at 2 micro-units: the estimate is above 0.0001 and below 0.01
    assert seen["0.0001"] == (402, "estimated_cost_too_high")
    assert seen["0.01"] == (200, None)
    assert seen["lots"][0] == 400
    refused = [r for r in found if r["outcome"] == "refused"]
    assert sorted(r["status"] for r in refused) == [400, 402, 402, 429]
    assert all(r["cost"] == 0 for r in refused)
