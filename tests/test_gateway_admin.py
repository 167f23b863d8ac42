"""The gateway in process: its admin listener (the token enforced, refusing everyone when unset;
backends registered, drained, weighted, pinned and removed at run time), discovery (a registry's
backends arrive, and leave after their grace period) and a breaker opening and half-opening,
the last two under MockClock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import handlers.gateway as gateway
from tests.conftest import serve, serve_gateway_config
from trio_router import App, HTTPError

SPEC = Path(__file__).resolve().parent.parent / "specs" / "gateway.yaml"
STATIC = {"name": "static", "url": "http://127.0.0.1:9", "models": ["m1"]}


@asynccontextmanager
async def gateway_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **config: Any
) -> AsyncIterator[tuple[str, str]]:
    """The gateway's public and admin base URLs (health checks far apart: they are not tested here)."""
    document = {"backends": [STATIC], "health_interval": 10_000, "admin": {"port": 0}, **config}
    async with serve_gateway_config(tmp_path, monkeypatch, document) as (running, module):
        yield running.url, f"http://127.0.0.1:{module.REGISTRY.admin_port}"


def first_choice(model: str) -> str:
    backend, _ = next(gateway.REGISTRY.plan(model, trio.current_time()))
    return backend.name


async def test_admin_needs_its_token_and_manages_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "s3cret")
    token = {"x-admin-token": "s3cret"}
    async with gateway_with(tmp_path, monkeypatch) as (public, admin), httpx.AsyncClient() as http:
        assert (await http.get(f"{admin}/admin/backends")).status_code == 401
        assert (await http.get(f"{admin}/admin/backends", headers={"x-admin-token": "guess"})).status_code == 401
        assert (await http.get(f"{public}/admin/backends", headers=token)).status_code == 404  # not on the public port
        new = {"name": "extra", "url": "http://127.0.0.1:10", "models": ["m1", "m2"], "weight": 2}
        created = await http.post(f"{admin}/admin/backends", json=new, headers=token)
        assert created.status_code == 201 and created.json()["source"] == "admin"
        assert (await http.post(f"{admin}/admin/backends", json=new, headers=token)).status_code == 409
        assert "m2" in [m["id"] for m in (await http.get(f"{public}/v1/models")).json()["data"]]

        pinned = await http.put(f"{admin}/admin/pins/m1", json={"backend": "static"}, headers=token)
        assert pinned.json() == {"pins": {"m1": "static"}}
        assert {first_choice("m1") for _ in range(5)} == {"static"}
        assert (await http.delete(f"{admin}/admin/pins/m1", headers=token)).status_code == 204
        await http.put(f"{admin}/admin/backends/extra/weight", json={"weight": 4}, headers=token)
        assert [first_choice("m1") for _ in range(5)].count("extra") == 4  # weights 4:1

        drained = await http.put(f"{admin}/admin/backends/static/drain", json={"drained": True}, headers=token)
        assert drained.json()["drained"] is True
        assert {first_choice("m1") for _ in range(5)} == {"extra"}
        breakers = (await http.get(f"{admin}/admin/breakers", headers=token)).json()
        assert breakers["static"]["state"] == "closed" and breakers["static"]["backoff_s"] == 30

        assert (await http.delete(f"{admin}/admin/backends/extra", headers=token)).status_code == 204
        assert (await http.delete(f"{admin}/admin/backends/extra", headers=token)).status_code == 404
        assert (await http.get(f"{public}/stats")).status_code == 401  # an admin section: operators only
        assert [b["name"] for b in (await http.get(f"{public}/stats", headers=token)).json()["backends"]] == ["static"]


async def test_without_the_token_variable_the_admin_api_refuses_everyone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN", raising=False)
    async with gateway_with(tmp_path, monkeypatch) as (_, admin), httpx.AsyncClient() as http:
        assert (await http.get(f"{admin}/admin/backends", headers={"x-admin-token": ""})).status_code == 401


async def test_registry_backends_arrive_and_leave_after_the_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    listed: list[dict[str, Any]] = [{"name": "r1", "url": "http://127.0.0.1:11", "models": ["m3"]}]
    registry_app = App()

    @registry_app.route("GET", "/backends")
    def backends(request: Any) -> dict[str, Any]:
        return {"backends": listed}

    async with serve(registry_app) as registry:
        config = {"registry_url": f"{registry.url}/backends", "registry_interval": 10, "registry_grace": 60}
        async with gateway_with(tmp_path, monkeypatch, **config):
            await trio.sleep(1)
            assert gateway.REGISTRY.backends["r1"].source == "registry"
            listed.clear()
            await trio.sleep(10)  # the next poll notices r1 is gone...
            gone_at = trio.current_time()
            while "r1" in gateway.REGISTRY.backends:  # noqa: ASYNC110 (timing the removal)
                await trio.sleep(1)
            assert 50 <= trio.current_time() - gone_at <= 70  # ...and it leaves 60 s after (+/- a poll)
            assert "static" in gateway.REGISTRY.backends  # configured backends are not the registry's to remove


async def test_a_failing_backend_is_cut_off_then_probed_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    """The breaker end to end: five failures open it (requests then fail fast with 503, the
    backend is not called), after the 30 s backoff one probe goes through and closes it."""
    state = {"failing": True, "calls": 0}
    backend_app = App()

    @backend_app.route("POST", "/v1/chat/completions")
    def answer(request: Any) -> Any:
        state["calls"] += 1
        if state["failing"]:
            raise HTTPError(500, "down", close=False)
        return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "ok"}}]}

    body = {"model": "m9", "messages": [{"role": "user", "content": "hi"}]}
    async with serve(backend_app) as upstream:
        only = {"name": "solo", "url": upstream.url, "models": ["m9"], "health_url": f"{upstream.url}/nothing"}
        config = {"backends": [only], "retry_delay": 0, "unhealthy_after": 1000}
        async with gateway_with(tmp_path, monkeypatch, **config) as (public, _), httpx.AsyncClient() as http:
            statuses = [(await http.post(f"{public}/v1/chat/completions", json=body)).status_code for _ in range(7)]
            assert statuses == [502] * 5 + [503] * 2  # open after five: the next ones never reach it
            assert state["calls"] == 5
            state["failing"] = False
            await trio.sleep(29)
            assert (await http.post(f"{public}/v1/chat/completions", json=body)).status_code == 503
            await trio.sleep(1)  # 30 s after opening: half-open, one probe
            probe = await http.post(f"{public}/v1/chat/completions", json=body)
            assert probe.status_code == 200 and state["calls"] == 6
            assert gateway.REGISTRY.backends["solo"].breaker.state.value == "closed"
