"""Tenants, keys, cost prediction, budgets and rate limits, idempotency and usage records for
the gateway (docs/gateway.md, "Tenants, limits and usage")."""

from __future__ import annotations

from trio_router import App

from .config import TenancyConfig
from .keys import Identities
from .memory_state import MemoryState
from .meter import Meter
from .redis_state import RedisState
from .state import State
from .usage import UsageLog
from .usage_sinks import JsonlSink, RedisStreamSink, Sink


class Tenancy:
    """Everything the tenancy needs, built once at setup."""

    def __init__(self, app: App, config: TenancyConfig) -> None:
        state_config = config.state
        if state_config.backend == "memory" and app.workers > 1:
            raise ValueError(
                f"--workers {app.workers} with the in-memory tenancy state would give each worker its own budgets "
                "and rate limits; set state.backend: redis and state.redis_url in the gateway config"
            )
        state: State
        if state_config.backend == "redis":
            assert state_config.redis_url is not None
            redis = RedisState(state_config.redis_url, state_config.timeout)
            app.background(redis.run)
            state = redis
        else:
            state = MemoryState()
        state.idempotency_quota = (config.idempotency_max_entries, config.idempotency_max_bytes)
        self.state = state
        self.identities = Identities(config, state)
        self.usage = _usage_log(app, config)
        if self.usage is not None:
            app.background(self.usage.run)
        self.meter = Meter(app, config, state, self.usage)


def _usage_log(app: App, config: TenancyConfig) -> UsageLog | None:
    usage = config.usage
    sink: Sink
    if usage.sink == "none":
        return None
    if usage.sink == "redis":
        if not config.state.redis_url:
            raise ValueError("usage.sink redis needs state.redis_url (the Redis the stream lives in)")
        sink = RedisStreamSink(config.state.redis_url, usage.stream)
    else:
        sink = JsonlSink(usage.path)
    return UsageLog(app, usage, sink)


__all__ = ["Tenancy", "TenancyConfig"]
