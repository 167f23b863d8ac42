"""Health checks: every ``health_interval`` each backend's health URL is fetched;
``unhealthy_after`` consecutive failures take it out of rotation, one success puts it back."""

from __future__ import annotations

import httpx
import trio

from trio_router import shared_async_client

from .backends import Backend, Registry


async def check_forever(registry: Registry) -> None:
    while True:
        await check_all(registry)
        await trio.sleep(registry.config.health_interval)


async def check_all(registry: Registry) -> None:
    async with trio.open_nursery() as nursery:
        for backend in list(registry.backends.values()):
            nursery.start_soon(check_one, registry, backend)


async def check_one(registry: Registry, backend: Backend) -> None:
    config = registry.config
    started = trio.current_time()
    ok = False
    with trio.move_on_after(config.health_timeout):
        try:
            reply = await shared_async_client().get(backend.config.health(), timeout=config.health_timeout)
            ok = reply.status_code == 200
        except httpx.HTTPError:
            ok = False
    if ok:
        backend.healthy, backend.failed_checks = True, 0
        backend.health_latency = trio.current_time() - started
    else:
        backend.failed_checks += 1
        if backend.failed_checks >= config.unhealthy_after:
            backend.healthy = False
