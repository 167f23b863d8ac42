"""The LLM gateway (specs/gateway.yaml): an OpenAI-compatible API in front of model backends,
built only on trio-router's public API. Configuration: docs/gateway.md."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from trio_router import App, EventStream, Principal, Request, Response

from .admin import start_admin
from .backends import Registry
from .config import GatewayConfig, load_config
from .discovery import poll_forever
from .embedded import start_embedded_mock
from .health import check_forever
from .operator import operator_check, require_operator
from .proxy import forward
from .tenancy import Tenancy

REGISTRY = Registry(GatewayConfig())
TENANCY: Tenancy | None = None
OPERATOR: Callable[[Request], bool] | None = None  # who may read /stats, /services, /metrics


async def verify_key(request: Request) -> Principal | None:
    """The spec's GatewayKey scheme: tenant API keys (handlers/gateway/tenancy/keys.py)."""
    assert TENANCY is not None, "setup(app) builds the tenancy before the first request"
    return await TENANCY.identities.verify(request)


SECURITY = {"GatewayKey": {"verify": verify_key, "challenge": 'Bearer realm="gateway"'}}


def setup(app: App) -> None:
    """Build the registry and the tenancy from the configuration once; start the health checks."""
    global REGISTRY, TENANCY, OPERATOR
    config = load_config()
    tenancy = Tenancy(app, config)
    registry = Registry(config)
    for backend in config.backends:
        registry.add(backend)
    if config.embedded_mock:
        start_embedded_mock(app, registry)
    if config.admin is not None:
        if app.workers > 1:  # each worker would bind the port, and pins/weights/drains are per process
            raise ValueError(
                f"the admin API changes one process's routing, so it cannot serve --workers {app.workers}; "
                "run one worker per gateway process (scale with replicas) or remove the admin section"
            )
        start_admin(app, registry, tenancy)
    if config.registry_url is not None:
        app.background(partial(poll_forever, registry, config.registry_url))
    app.background(partial(check_forever, registry))
    OPERATOR = operator_check(config)
    if OPERATOR is not None:
        app.guard_metrics(OPERATOR)
    REGISTRY, TENANCY = registry, tenancy


def _metered(request: Request, path: str, body: dict[str, Any]) -> Response | EventStream:
    assert TENANCY is not None
    return TENANCY.meter.handle(request, path, body, partial(forward, REGISTRY, request, path, body))


def chat_completions(request: Request, body: dict[str, Any]) -> Response | EventStream:
    return _metered(request, "/v1/chat/completions", body)


def completions(request: Request, body: dict[str, Any]) -> Response | EventStream:
    return _metered(request, "/v1/completions", body)


def embeddings(request: Request, body: dict[str, Any]) -> Response | EventStream:
    return _metered(request, "/v1/embeddings", body)


def list_models() -> dict[str, Any]:
    data = [{"id": model, "object": "model", "created": 0, "owned_by": "trio-router"} for model in REGISTRY.models()]
    return {"object": "list", "data": data}


def health() -> dict[str, Any]:
    return {"status": "ok", "healthy_backends": sum(b.healthy for b in REGISTRY.backends.values())}


def stats(request: Request) -> dict[str, Any]:
    require_operator(OPERATOR, request)
    return {"backends": [backend.stats() for backend in REGISTRY.backends.values()]}


def services(request: Request) -> dict[str, Any]:
    require_operator(OPERATOR, request)
    return {
        "models": {
            model: [b.name for b in REGISTRY.backends.values() if model in b.config.models]
            for model in REGISTRY.models()
        },
        "backends": [
            {"name": b.name, "url": b.config.url, "role": b.config.role, "healthy": b.healthy}
            for b in REGISTRY.backends.values()
        ],
    }
