"""What the tenancy keeps between requests, and the rules of reserving against limits.

Two backends implement ``State``: ``MemoryState`` (one process) and ``RedisState`` (shared by
workers and replicas, each check-and-reserve one Lua script). Both follow the same rules:

- Windows are fixed and wall-clock aligned: the minute and hour (velocity counters, ``rpm`` and
  ``tpm``), and the budget period (UTC day, UTC month, or all time).
- ``reserve`` checks the tenant's limits, then the key's, and takes the request's estimate
  only if every one of them holds: requests +1, tokens +estimate, spend +estimate. So however
  many requests race, a limit is passed only by what estimates missed.
- ``adjust`` replaces the reserved tokens and spend with the actual ones (0, 0 releases them on
  failure); the request itself stays counted. It never recreates a window that has expired.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import trio

from .config import KeyRecord, Limits, TenantLimits

T = TypeVar("T")
MINUTE_TTL = 120
HOUR_TTL = 7200
PERIOD_TTL = {"day": 2 * 86400, "month": 40 * 86400, "total": 0}  # 0: never expires


@dataclass(frozen=True, slots=True)
class Ask:
    tenant: TenantLimits
    key: KeyRecord
    cost: int  # micro-units
    tokens: int
    now: float  # wall clock, seconds since the epoch


@dataclass(frozen=True, slots=True)
class Reservation:
    tenant: str
    key_id: str
    cost: int
    tokens: int
    minute: int
    hour: int
    tenant_period: str
    key_period: str


class Refused(Exception):
    """A limit does not hold: 402 for a budget, 429 (with Retry-After) for a rate."""

    def __init__(self, scope: str, limit: str, now: float) -> None:
        self.scope = scope  # "tenant" or "key"
        self.limit = limit  # "budget", "rpm" or "tpm"
        self.status = 402 if limit == "budget" else 429
        self.retry_after = None if limit == "budget" else max(1, math.ceil(60 - now % 60))
        what = {"budget": "spend budget", "rpm": "requests per minute", "tpm": "tokens per minute"}[limit]
        super().__init__(f"the {scope}'s {what} would be exceeded")


class StateUnavailable(Exception):
    """The shared state cannot be reached (Redis down or too slow)."""


def period_id(period: str, now: float) -> str:
    if period == "total":
        return "all"
    return _calendar_id(period, int(now // 86400))  # UTC days start at multiples of 86400 s


@functools.lru_cache(maxsize=16)
def _calendar_id(period: str, day: int) -> str:
    """Formatted once per period and day, not twice per request (tenant and key)."""
    return time.strftime("%Y-%m-%d" if period == "day" else "%Y-%m", time.gmtime(day * 86400))


def reservation_for(ask: Ask) -> Reservation:
    return Reservation(
        ask.tenant.name,
        ask.key.id,
        ask.cost,
        ask.tokens,
        int(ask.now // 60),
        int(ask.now // 3600),
        period_id(ask.tenant.budget_period, ask.now),
        period_id(ask.key.budget_period, ask.now),
    )


def limit_values(limits: Limits) -> tuple[int, int, int]:
    """(budget in micro-units, rpm, tpm), -1 for none: the form the Lua script reads."""
    budget = -1 if limits.budget is None else round(limits.budget * 1_000_000)
    return budget, -1 if limits.rpm is None else limits.rpm, -1 if limits.tpm is None else limits.tpm


class State(Protocol):
    idempotency_quota: tuple[int, int]  # each tenant's stored answers: at most (entries, bytes)

    async def reserve(self, ask: Ask) -> Reservation:
        """The reservation, or Refused naming the first limit that would not hold."""

    async def adjust(self, reservation: Reservation, cost: int, tokens: int) -> None: ...

    async def velocity(self, tenant: TenantLimits, now: float) -> dict[str, dict[str, int]]:
        """The tenant's counters for the current minute, hour and budget period."""

    async def find_key(self, key_hash: str) -> KeyRecord | None: ...

    async def save_key(self, record: KeyRecord) -> None: ...

    async def delete_key(self, key_id: str) -> KeyRecord | None: ...

    async def keys(self) -> list[KeyRecord]: ...

    async def tenant(self, name: str) -> TenantLimits | None: ...

    async def save_tenant(self, tenant: TenantLimits) -> None: ...

    async def tenants(self) -> list[TenantLimits]: ...

    async def first_use(self, tenant: str, token: str, ttl: float) -> bool:
        """True the first time ``token`` is seen within ``ttl`` (signature replay protection)."""

    async def idempotency_begin(self, tenant: str, key: str, ttl: float, pending: str) -> str | None:
        """None if the key is new (now marked in flight with ``pending``, which names the
        request); else what the key holds: a pending marker or the stored answer."""

    async def idempotency_store(self, tenant: str, key: str, answer: str, ttl: float) -> None: ...

    async def idempotency_forget(self, tenant: str, key: str) -> None: ...


PENDING = "pending"  # the prefix of an in-flight key's marker: "pending:<request fingerprint>"


async def shielded(awaitable: Awaitable[T], seconds: float = 5.0) -> T | None:
    """``awaitable`` run to its end even in a cancelled request (a client that left must still
    be charged and release what it reserved), within ``seconds``; None if it ran out of time."""
    with trio.CancelScope(shield=True, deadline=trio.current_time() + seconds):
        return await awaitable
    return None
