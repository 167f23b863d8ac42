"""Tenants on the gateway with the in-memory state: API keys (hashed) and signatures, cost
headers and the seatbelt, budgets and rate limits through the openai SDK, idempotency, usage
records (validated against specs/usage-record.schema.json), the admin API for keys and tenants,
and the refusal to run --workers N with in-memory limits."""

from __future__ import annotations

import hashlib
import json
import time
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

from tests.conftest import Running, raw_request, serve_gateway_config
from tests.test_cli import ServerProcess
from tests.test_mock_backend import free_port_pair
from trio_router.security.verifiers import sign

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
        for name, models, extra in (
            ("fast", "m-fast,m-retry", ()),
            ("slow", "m-slow", ("--latency", "1")),
            ("broken", "m-retry", ("--fail-rate", "1")),
        ):
            port = free_port_pair()
            args = ("--port", str(port), "--name", name, "--models", models, "--tokens-per-second", "0", *extra)
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
            {"name": "fast", "url": backend["fast"], "models": ["m-fast", "m-retry"]},
            {"name": "slow", "url": backend["slow"], "models": ["m-slow"]},
            {"name": "broken", "url": backend["broken"], "models": ["m-retry"], "weight": 1000},  # tried first
        ],
        "retry_delay": 0.01,
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
    monkeypatch.setenv("TEST_GATEWAY_ADMIN", ADMIN_TOKEN)
    async with serve_gateway_config(tmp_path, monkeypatch, config) as (running, module):
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


async def tenant_usage(client: httpx.AsyncClient, admin: str, name: str = "acme") -> dict[str, Any]:
    reply = await client.get(f"{admin}/admin/tenants/{name}", headers={"x-admin-token": ADMIN_TOKEN})
    return reply.json()["usage"]  # type: ignore[no-any-return]


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


async def test_idempotency_key_replays_the_answer_and_charges_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: dict[str, str]
) -> None:
    async with serve_gateway(tmp_path, monkeypatch, base_config(tmp_path, backend)) as (running, _):
        headers = {"authorization": f"Bearer {KEYS['acme']}"}

        async def post(client: httpx.AsyncClient, key: str, model: str = "m-fast", **extra: Any) -> httpx.Response:
            body = {"model": model, "messages": HELLO, **extra}
            return await client.post("/v1/chat/completions", json=body, headers={**headers, "idempotency-key": key})

        async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
            first = await post(client, "order-1")
            again = await post(client, "order-1")
            reused = await post(client, "order-1", temperature=0.5)  # the same key, another request
            replies: dict[str, httpx.Response] = {}

            async def slow(name: str) -> None:
                replies[name] = await post(client, "order-2", model="m-slow")

            async with trio.open_nursery() as nursery:  # the slow backend takes 1 s: the second is in flight
                nursery.start_soon(slow, "first")
                await trio.sleep(0.3)
                nursery.start_soon(slow, "second")
            streamed = await post(client, "order-3", stream=True)
            stream_again = await post(client, "order-3", stream=True)
            other_tenant = await client.post(
                "/v1/chat/completions",
                json={"model": "m-fast", "messages": HELLO},
                headers={"authorization": f"Bearer {KEYS['beta']}", "idempotency-key": "order-1"},
            )
            found = await records(tmp_path / "usage.jsonl", 8)
    assert first.status_code == again.status_code == 200
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert replies["first"].status_code == 200
    assert replies["second"].status_code == 409
    assert replies["second"].json()["error"]["code"] == "idempotency_key_in_use"
    assert streamed.status_code == 200 and stream_again.status_code == 409
    assert other_tenant.status_code == 200 and other_tenant.content != first.content  # keys are per tenant
    # charged: order-1 once, order-2 once, order-3 once; the replay and the refusals cost nothing
    charged = sorted(r["idempotency_key"] for r in found if r["tenant"] == "acme" and r["cost"] > 0)
    assert charged == ["order-1", "order-2", "order-3"]
    assert sorted(r["outcome"] for r in found if r["tenant"] == "acme" and r["cost"] == 0) == [
        "ok",
        "refused",
        "refused",
        "refused",
    ]


async def test_a_request_the_gateway_retried_is_charged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: dict[str, str]
) -> None:
    async with (
        serve_gateway(tmp_path, monkeypatch, base_config(tmp_path, backend)) as (running, admin),
        httpx.AsyncClient() as client,
    ):
        reply = await client.post(
            f"{running.url}/v1/chat/completions",
            json={"model": "m-retry", "messages": HELLO},
            headers={"authorization": f"Bearer {KEYS['acme']}"},
        )
        tenant = await tenant_usage(client, admin)
        failed, record = await records(tmp_path / "usage.jsonl", 2)
    assert reply.status_code == 200 and reply.headers["x-router-attempts"] == "2"
    assert reply.headers["x-router-backend"] == "fast"
    assert tenant["hour"]["req"] == 1
    assert tenant["period"]["spend"] == float(reply.headers["x-router-cost-actual"]) == record["cost"]
    assert (record["attempts"], record["backend"]) == (2, "fast")
    assert (failed["attempt"], failed["outcome"], failed["cost"]) == (1, "upstream_error", 0)  # the 5xx


async def test_a_client_that_hangs_up_is_recorded_and_its_reservation_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: dict[str, str]
) -> None:
    async with (
        serve_gateway(tmp_path, monkeypatch, base_config(tmp_path, backend)) as (running, admin),
        httpx.AsyncClient() as client,
    ):
        raw = await running.connect()
        body = json.dumps({"model": "m-slow", "messages": HELLO, "max_tokens": 50}).encode()
        headers = [("authorization", f"Bearer {KEYS['acme']}"), ("content-type", "application/json")]
        await raw.send(raw_request("POST", "/v1/chat/completions", body, headers))
        await trio.sleep(0.3)  # the slow backend answers after 1 s
        await raw.aclose()
        (record,) = await records(tmp_path / "usage.jsonl", 1)
        tenant = await tenant_usage(client, admin)
    assert (record["status"], record["outcome"], record["cost"]) == (499, "error", 0)
    assert record["cost_estimated"] > 0
    assert tenant["hour"] == {"req": 1, "tok": 0, "spend": 0}  # reserved, then released


async def test_signed_keys_need_a_fresh_valid_signature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: dict[str, str]
) -> None:
    key = KEYS["signed"]
    body = json.dumps({"model": "m-fast", "messages": HELLO}).encode()
    target = "/v1/chat/completions"

    def signature(stamp: int, payload: bytes = body) -> str:
        return f"t={stamp}, sig={sign(key.encode(), stamp, 'POST', target, payload)}"

    async with (
        serve_gateway(tmp_path, monkeypatch, base_config(tmp_path, backend)) as (running, _),
        httpx.AsyncClient(base_url=running.url) as client,
    ):

        async def post(sig: str | None, payload: bytes = body) -> httpx.Response:
            headers: dict[str, str | bytes] = {"authorization": f"Bearer {key}", "content-type": "application/json"}
            if sig is not None:
                headers["x-router-signature"] = sig.encode()  # UTF-8 on the wire
            return await client.post(target, content=payload, headers=headers)

        now = int(time.time())
        unsigned = await post(None)
        good = await post(signature(now))
        replayed = await post(signature(now))
        stale = await post(signature(now - 3600))
        tampered = await post(signature(now + 1), body.replace(b"hello", b"HELLO"))
        odd_stamps = [await post(f"t={stamp}, sig=00") for stamp in ("\u00b9", "9" * 400, "9" * 5000)]
    assert [reply.status_code for reply in odd_stamps] == [401, 401, 401]  # were 500s: int() and float overflow
    assert all("needs t=<unix seconds>" in reply.json()["error"]["message"] for reply in odd_stamps)
    assert good.status_code == 200
    assert unsigned.status_code == 401 and "must sign" in unsigned.json()["error"]["message"]
    assert replayed.status_code == 401 and "already used" in replayed.json()["error"]["message"]
    assert stale.status_code == 401 and "timestamp" in stale.json()["error"]["message"]
    assert tampered.status_code == 401 and "does not match" in tampered.json()["error"]["message"]


async def test_admin_makes_tenants_and_keys_that_work_at_once_and_revokes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: dict[str, str]
) -> None:
    async with (
        serve_gateway(tmp_path, monkeypatch, base_config(tmp_path, backend)) as (running, admin),
        httpx.AsyncClient(base_url=admin, headers={"x-admin-token": ADMIN_TOKEN}) as admin_client,
    ):
        no_tenant = await admin_client.post("/admin/keys", json={"tenant": "gamma"})
        config_tenant = await admin_client.put("/admin/tenants/acme", json={"rpm": 1})
        made = await admin_client.put("/admin/tenants/gamma", json={"rpm": 1})
        created = await admin_client.post("/admin/keys", json={"tenant": "gamma", "id": "gamma-1"})
        taken = await admin_client.post("/admin/keys", json={"tenant": "gamma", "id": "gamma-1"})
        listed = (await admin_client.get("/admin/keys")).json()["keys"]
        async with httpx.AsyncClient(base_url=running.url) as client:

            async def ask() -> httpx.Response:
                headers = {"authorization": f"Bearer {created.json()['key']}"}
                return await client.post("/v1/embeddings", json={"model": "m-fast", "input": "x"}, headers=headers)

            used, limited = await ask(), await ask()
            revoked = await admin_client.delete("/admin/keys/gamma-1")
            after = await ask()
        gamma = (await admin_client.get("/admin/tenants/gamma")).json()
        unknown_field = await admin_client.put("/admin/tenants/gamma", json={"rpm": 1, "colour": "red"})
    assert no_tenant.status_code == 404 and config_tenant.status_code == 409
    assert made.status_code == 200 and created.status_code == 201 and taken.status_code == 409
    assert created.json()["key"].startswith("sk-tr-")
    assert {k["id"]: k["source"] for k in listed} == {
        "acme-main": "config", "acme-slow": "config", "acme-signed": "config", "beta-main": "config", "gamma-1": "admin"
    }  # fmt: skip
    assert all("sha256" not in k and "key" not in k for k in listed)
    assert (used.status_code, limited.status_code, revoked.status_code, after.status_code) == (200, 429, 204, 401)
    assert gamma["usage"]["minute"]["req"] == 1 and gamma["source"] == "admin"
    assert unknown_field.status_code == 400


def test_workers_with_in_memory_limits_refuse_to_start(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"tenants": [{"name": "acme", "rpm": 10}], "embedded_mock": True}))
    process = ServerProcess(
        "--handlers", "handlers.gateway", "--spec", str(SPEC), "--workers", "2", env={"GATEWAY_CONFIG": str(config)}
    )
    assert process.process.wait(30) == 1
    process.close()
    assert "--workers 2 with the in-memory tenancy state" in "".join(process.lines)
    assert "state.backend: redis" in "".join(process.lines)


def test_workers_with_the_admin_api_refuse_to_start(tmp_path: Path) -> None:
    """Pins and drains are one process's; each worker would also bind the admin port."""
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"embedded_mock": True, "state": {"backend": "redis", "redis_url": "redis://x"},
                                      "usage": {"sink": "none"}, "admin": {"port": 0}}))  # fmt: skip
    process = ServerProcess(
        "--handlers", "handlers.gateway", "--spec", str(SPEC), "--workers", "2", env={"GATEWAY_CONFIG": str(config)}
    )
    assert process.process.wait(30) == 1
    process.close()
    assert "cannot serve --workers 2" in "".join(process.lines)
