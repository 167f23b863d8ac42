"""Who may read /stats, /services and /metrics on the gateway's public port: an admin token
once tenants or an admin section are configured (operations_access: auto), anyone otherwise."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import handlers.gateway as gateway
from tests.conftest import serve
from trio_router import App

SPEC = Path(__file__).resolve().parent.parent / "specs" / "gateway.yaml"
BACKEND = {"name": "b", "url": "http://127.0.0.1:9", "models": ["m"]}
TENANT = {"name": "acme", "keys": [{"id": "k", "sha256": "0" * 64}]}
OPERATIONAL = ("/stats", "/services", "/metrics")


async def statuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], **headers: str
) -> list[int]:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"backends": [BACKEND], "health_interval": 3600, **config}))
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", "ops-one, ops-two")
    module = importlib.reload(gateway)
    async with (
        serve(App.from_spec(SPEC, module), metrics_path="/metrics") as running,
        httpx.AsyncClient(base_url=running.url) as client,
    ):
        return [(await client.get(path, headers=headers)).status_code for path in OPERATIONAL]


async def test_with_tenants_the_operational_endpoints_need_an_admin_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"tenants": [TENANT], "usage": {"sink": "none"}}
    assert await statuses(tmp_path, monkeypatch, config) == [401, 401, 401]
    assert await statuses(tmp_path, monkeypatch, config, authorization="Bearer nope") == [401, 401, 401]
    assert await statuses(tmp_path, monkeypatch, config, authorization="Bearer ops-two") == [200, 200, 200]
    assert await statuses(tmp_path, monkeypatch, config, **{"x-admin-token": "ops-one"}) == [200, 200, 200]


async def test_without_tenants_or_admin_they_are_public_unless_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await statuses(tmp_path, monkeypatch, {"usage": {"sink": "none"}}) == [200, 200, 200]
    closed = {"usage": {"sink": "none"}, "operations_access": "token"}
    assert await statuses(tmp_path, monkeypatch, closed) == [401, 401, 401]
    opened = {"tenants": [TENANT], "usage": {"sink": "none"}, "operations_access": "public"}
    assert await statuses(tmp_path, monkeypatch, opened) == [200, 200, 200]
