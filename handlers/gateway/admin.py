"""The gateway's admin API (specs/gateway_admin.yaml), on its own listener: backends registered
and removed at run time, weights, draining, model pins, breakers; tenants and keys (TenancyAdmin)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from trio_router import App, HTTPError, Response, bind_listener

from .. import spec_path
from .backends import Backend, Registry
from .beside import serve_beside
from .config import BackendConfig
from .tenancy import Tenancy
from .tenancy.admin import TenancyAdmin

SPEC = spec_path("gateway_admin.yaml")


class AdminHandlers(TenancyAdmin):
    """Bound to the admin spec's operations (as a module would be): each holds the registry."""

    def __init__(self, registry: Registry, tenancy: Tenancy) -> None:
        self.registry = registry
        self.tenancy = tenancy

    def admin_list_backends(self) -> dict[str, Any]:
        return {
            "backends": [backend.stats() for backend in self.registry.backends.values()],
            "pins": self.registry.pins,
        }

    def admin_register_backend(self, body: dict[str, Any]) -> Response:
        if body["name"] in self.registry.backends:
            raise HTTPError(409, f"backend {body['name']!r} is already registered", close=False)
        try:
            config = BackendConfig.model_validate(body)
        except ValidationError as exc:
            raise HTTPError(400, str(exc.errors()[0]["msg"]), close=False) from None
        backend = self.registry.add(config, source="admin")
        return Response.json(backend.stats(), status=201)

    def admin_deregister_backend(self, name: str) -> None:
        self._backend(name)
        self.registry.remove(name)

    def admin_set_weight(self, name: str, body: dict[str, Any]) -> dict[str, object]:
        backend = self._backend(name)
        backend.config = backend.config.model_copy(update={"weight": body["weight"]})
        return backend.stats()

    def admin_set_drain(self, name: str, body: dict[str, Any]) -> dict[str, object]:
        backend = self._backend(name)
        backend.drained = body["drained"]
        return backend.stats()

    def admin_pin_model(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        backend = self._backend(body["backend"])
        if model not in backend.config.models:
            raise HTTPError(409, f"backend {backend.name!r} does not serve {model!r}", close=False)
        self.registry.pins[model] = backend.name
        return {"pins": self.registry.pins}

    def admin_unpin_model(self, model: str) -> None:
        if self.registry.pins.pop(model, None) is None:
            raise HTTPError(404, f"model {model!r} is not pinned", close=False)

    def admin_breakers(self) -> dict[str, Any]:
        return {
            name: {
                "state": b.breaker.state.value,
                "open_until": b.breaker.open_until,
                "reopenings": b.breaker.reopenings,
                "backoff_s": b.breaker.backoff(),
            }
            for name, b in self.registry.backends.items()
        }

    def _backend(self, name: str) -> Backend:
        backend = self.registry.backends.get(name)
        if backend is None:
            raise HTTPError(404, f"no backend {name!r}", close=False)
        return backend


def admin_app(registry: Registry, tenancy: Tenancy, token_env: str) -> App:
    handlers = AdminHandlers(registry, tenancy)
    return App.from_spec(SPEC, handlers, security={"AdminToken": {"keys_env": token_env}})  # type: ignore[arg-type]


def start_admin(app: App, registry: Registry, tenancy: Tenancy) -> None:
    """Bind the admin listener now (a taken port stops startup) and serve it with the server."""
    admin = registry.config.admin
    assert admin is not None
    listener = bind_listener(admin.host, admin.port, 128, reuse_port=False)
    registry.admin_port = listener.getsockname()[1]
    serve_beside(app, admin_app(registry, tenancy, admin.token_env), listener, metrics_path="")
