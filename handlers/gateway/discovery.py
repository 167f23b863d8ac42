"""Backends from a registry URL, polled every ``registry_interval`` seconds. The registry answers
``{"backends": [<backend>, ...]}`` (the config file's backend format). A backend it stops listing
keeps serving for ``registry_grace`` seconds (a registry that flaps loses nothing), then leaves
routing; its requests in flight finish. A registry that cannot be read changes nothing."""

from __future__ import annotations

import logging

import httpx
import trio
from pydantic import ValidationError

from trio_router import shared_async_client

from .backends import Registry
from .config import BackendConfig

log = logging.getLogger("gateway.discovery")


async def poll_forever(registry: Registry, url: str) -> None:
    while True:
        await poll_once(registry, url)
        await trio.sleep(registry.config.registry_interval)


async def poll_once(registry: Registry, url: str) -> None:
    try:
        reply = await shared_async_client().get(url, timeout=registry.config.health_timeout)
        reply.raise_for_status()
        listed = [BackendConfig.model_validate(item) for item in reply.json()["backends"]]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, ValidationError) as exc:
        log.warning("backend registry %s unreadable, keeping the backends as they are: %s", url, exc)
        return
    now = trio.current_time()
    names = {config.name for config in listed}
    for config in listed:
        known = registry.backends.get(config.name)
        if known is None:
            registry.add(config, source="registry")
        elif known.source == "registry":
            known.config, known.missing_since = config, None
    for backend in list(registry.backends.values()):
        if backend.source != "registry" or backend.name in names:
            continue
        if backend.missing_since is None:
            backend.missing_since = now
        elif now - backend.missing_since >= registry.config.registry_grace:
            log.info("backend %s left the registry %gs ago: removed", backend.name, now - backend.missing_since)
            registry.remove(backend.name)
