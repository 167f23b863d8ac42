"""The admin API's tenant and key operations (specs/gateway_admin.yaml). Tenants and keys
from the config file are read-only here; those made here live in the state (shared by replicas
with the Redis state; each replica's cache catches up within ``state.cache_ttl``)."""

from __future__ import annotations

import time
from typing import Any

from trio_router import HTTPError, Response, await_

from . import Tenancy
from .config import KeyRecord, TenantLimits
from .cost import money
from .keys import key_hash, new_key
from .state import StateUnavailable


def _state(awaitable: Any) -> Any:
    try:
        return await_(awaitable)
    except StateUnavailable as exc:
        raise HTTPError(503, f"the tenancy state cannot be reached: {exc}", close=False) from None


class TenancyAdmin:
    tenancy: Tenancy

    def admin_list_tenants(self) -> dict[str, Any]:
        identities = self.tenancy.identities
        stored = _state(identities.state.tenants())
        tenants = {**{t.name: t for t in stored}, **identities.config_tenants}
        return {"tenants": [self._tenant_view(tenant) for _, tenant in sorted(tenants.items())]}

    def admin_get_tenant(self, name: str) -> dict[str, Any]:
        tenant = _state(self.tenancy.identities.tenant(name))
        if tenant is None:
            raise HTTPError(404, f"no tenant {name!r}", close=False)
        return self._tenant_view(tenant)

    def admin_put_tenant(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        identities = self.tenancy.identities
        if name in identities.config_tenants:
            raise HTTPError(409, f"tenant {name!r} is defined in the config file; change it there", close=False)
        tenant = TenantLimits(name=name, **body)
        _state(identities.state.save_tenant(tenant))
        identities.forget(tenant=name)
        return self._tenant_view(tenant)

    def _tenant_view(self, tenant: TenantLimits) -> dict[str, Any]:
        counters = _state(self.tenancy.state.velocity(tenant, time.time()))
        for window in counters.values():
            if "spend" in window:
                window["spend"] = money(window["spend"])
        source = "config" if tenant.name in self.tenancy.identities.config_tenants else "admin"
        return {**tenant.model_dump(), "source": source, "usage": counters}

    def admin_list_keys(self) -> dict[str, Any]:
        identities = self.tenancy.identities
        stored = _state(identities.state.keys())
        records = [*identities.config_keys.values(), *stored]
        return {"keys": [_key_view(record, record.sha256 in identities.config_keys) for record in records]}

    def admin_create_key(self, body: dict[str, Any]) -> Response:
        identities = self.tenancy.identities
        if _state(identities.tenant(body["tenant"])) is None:
            raise HTTPError(
                404, f"no tenant {body['tenant']!r}; create it first (PUT /admin/tenants/{{name}})", close=False
            )
        key_id = body.get("id") or f"key-{new_key()[6:14]}"
        if key_id in {record.id for record in identities.config_keys.values()} or any(
            record.id == key_id for record in _state(identities.state.keys())
        ):
            raise HTTPError(409, f"key id {key_id!r} is taken", close=False)
        key = new_key()
        record = KeyRecord(**{**body, "id": key_id, "sha256": key_hash(key)})
        _state(identities.state.save_key(record))
        return Response.json({**_key_view(record, False), "key": key}, status=201)

    def admin_delete_key(self, key_id: str) -> None:
        identities = self.tenancy.identities
        if any(record.id == key_id for record in identities.config_keys.values()):
            raise HTTPError(409, f"key {key_id!r} is defined in the config file; remove it there", close=False)
        record = _state(identities.state.delete_key(key_id))
        if record is None:
            raise HTTPError(404, f"no key {key_id!r}", close=False)
        identities.forget(key_hash=record.sha256)


def _key_view(record: KeyRecord, from_config: bool) -> dict[str, Any]:
    """A key as the admin sees it: never its hash (nor, after creation, the key)."""
    return {**record.model_dump(exclude={"sha256"}), "source": "config" if from_config else "admin"}
