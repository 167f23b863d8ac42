"""``State`` in this process's memory: the default, for one process (``--workers 1``)."""

from __future__ import annotations

import time

from .config import KeyRecord, Limits, TenantLimits
from .state import Ask, Refused, Reservation, limit_values, period_id, reservation_for

Counters = dict[str, int]  # "req", "tok", "spend"


class _Expiring:
    """A dict whose entries vanish after their time to live (swept now and then, read lazily),
    holding at most ``max_items`` entries and ``max_bytes`` of values: past that the oldest go
    first. Every entry of one of these has the same time to live, so the oldest are the
    nearest to expiring anyway."""

    def __init__(self, max_items: int, max_bytes: int | None = None) -> None:
        self._items: dict[tuple[str, str], tuple[str, float]] = {}
        self._writes = 0
        self._bytes = 0
        self.max_items = max_items
        self.max_bytes = max_bytes

    def get(self, key: tuple[str, str]) -> str | None:
        item = self._items.get(key)
        if item is None or item[1] <= time.monotonic():
            return None
        return item[0]

    def set(self, key: tuple[str, str], value: str, ttl: float) -> None:
        self._writes += 1
        if self._writes % 1024 == 0:
            now = time.monotonic()
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
            self._bytes = sum(len(v[0]) for v in self._items.values())
        self.pop(key)  # a replaced entry moves to the end: it is the newest now
        self._items[key] = (value, time.monotonic() + ttl)
        self._bytes += len(value)
        while len(self._items) > self.max_items or (self.max_bytes is not None and self._bytes > self.max_bytes):
            self.pop(next(iter(self._items)))

    def pop(self, key: tuple[str, str]) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= len(item[0])


class MemoryState:
    def __init__(self) -> None:
        # (tenant, scope, window) -> counters; scope "t" (the tenant) or "k:<key id>";
        # window "m<minute>", "h<hour>" or "p<period>".
        self._windows: dict[tuple[str, str, str], Counters] = {}
        self._swept_minute = 0
        self._keys: dict[str, KeyRecord] = {}  # by hash
        self._tenants: dict[str, TenantLimits] = {}
        # Bounded, so no client can grow this process without limit: signatures seen within the
        # replay window, and idempotent answers (bodies included) within their time to live.
        self._seen = _Expiring(max_items=1_000_000)
        # Idempotent answers: one table per tenant, so no tenant can evict another's.
        self._idempotency: dict[str, _Expiring] = {}
        self.idempotency_quota = (10_000, 16 * 1024 * 1024)  # entries, bytes per tenant (from the config)

    async def reserve(self, ask: Ask) -> Reservation:
        reservation = reservation_for(ask)
        scopes = [
            ("t", "tenant", ask.tenant, reservation.tenant_period),
            (f"k:{ask.key.id}", "key", ask.key, reservation.key_period),
        ]
        for scope, name, limits, period in scopes:
            self._check(reservation, scope, name, limits, period, ask.now)
        self._sweep(reservation.minute)
        for scope, _, _, period in scopes:
            for window in (f"m{reservation.minute}", f"h{reservation.hour}"):
                counters = self._counters(reservation.tenant, scope, window)
                counters["req"] += 1
                counters["tok"] += ask.tokens
                counters["spend"] += ask.cost
            self._counters(reservation.tenant, scope, f"p{period}")["spend"] += ask.cost
        return reservation

    def _check(self, reservation: Reservation, scope: str, name: str, limits: Limits, period: str, now: float) -> None:
        budget, rpm, tpm = limit_values(limits)
        spent = self._peek(reservation.tenant, scope, f"p{period}")["spend"]
        minute = self._peek(reservation.tenant, scope, f"m{reservation.minute}")
        if budget >= 0 and spent + reservation.cost > budget:
            raise Refused(name, "budget", now)
        if rpm >= 0 and minute["req"] + 1 > rpm:
            raise Refused(name, "rpm", now)
        if tpm >= 0 and minute["tok"] + reservation.tokens > tpm:
            raise Refused(name, "tpm", now)

    def _counters(self, tenant: str, scope: str, window: str) -> Counters:
        counters = self._windows.get((tenant, scope, window))
        if counters is None:
            counters = self._windows[(tenant, scope, window)] = {"req": 0, "tok": 0, "spend": 0}
        return counters

    def _peek(self, tenant: str, scope: str, window: str) -> Counters:
        return self._windows.get((tenant, scope, window)) or {"req": 0, "tok": 0, "spend": 0}

    def _sweep(self, minute: int) -> None:
        """Drop minute and hour windows that can no longer be read (once a minute)."""
        if minute == self._swept_minute:
            return
        self._swept_minute = minute
        hour = minute // 60
        self._windows = {
            key: counters
            for key, counters in self._windows.items()
            if key[2][0] == "p"
            or (key[2][0] == "m" and int(key[2][1:]) >= minute - 1)
            or (key[2][0] == "h" and int(key[2][1:]) >= hour - 1)
        }

    async def adjust(self, reservation: Reservation, cost: int, tokens: int) -> None:
        spend, tok = cost - reservation.cost, tokens - reservation.tokens
        for scope, period in (("t", reservation.tenant_period), (f"k:{reservation.key_id}", reservation.key_period)):
            for window in (f"m{reservation.minute}", f"h{reservation.hour}"):
                counters = self._windows.get((reservation.tenant, scope, window))
                if counters is not None:  # never recreate a window that is gone
                    counters["tok"] += tok
                    counters["spend"] += spend
            counters = self._windows.get((reservation.tenant, scope, f"p{period}"))
            if counters is not None:
                counters["spend"] += spend

    async def velocity(self, limits: TenantLimits, now: float) -> dict[str, dict[str, int]]:
        tenant, period = limits.name, period_id(limits.budget_period, now)
        return {
            "minute": dict(self._peek(tenant, "t", f"m{int(now // 60)}")),
            "hour": dict(self._peek(tenant, "t", f"h{int(now // 3600)}")),
            "period": {"spend": self._peek(tenant, "t", f"p{period}")["spend"]},
        }

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        return self._keys.get(key_hash)

    async def save_key(self, record: KeyRecord) -> None:
        await self.delete_key(record.id)
        self._keys[record.sha256] = record

    async def delete_key(self, key_id: str) -> KeyRecord | None:
        for key_hash, record in list(self._keys.items()):
            if record.id == key_id:
                return self._keys.pop(key_hash)
        return None

    async def keys(self) -> list[KeyRecord]:
        return sorted(self._keys.values(), key=lambda record: record.id)

    async def tenant(self, name: str) -> TenantLimits | None:
        return self._tenants.get(name)

    async def save_tenant(self, tenant: TenantLimits) -> None:
        self._tenants[tenant.name] = tenant

    async def tenants(self) -> list[TenantLimits]:
        return sorted(self._tenants.values(), key=lambda tenant: tenant.name)

    async def first_use(self, tenant: str, token: str, ttl: float) -> bool:
        if self._seen.get((tenant, token)) is not None:
            return False
        self._seen.set((tenant, token), "1", ttl)
        return True

    async def idempotency_begin(self, tenant: str, key: str, ttl: float, pending: str) -> str | None:
        table = self._idempotency_table(tenant)
        found = table.get((tenant, key))
        if found is None:
            table.set((tenant, key), pending, ttl)
        return found

    async def idempotency_store(self, tenant: str, key: str, answer: str, ttl: float) -> None:
        self._idempotency_table(tenant).set((tenant, key), answer, ttl)

    async def idempotency_forget(self, tenant: str, key: str) -> None:
        self._idempotency_table(tenant).pop((tenant, key))

    def _idempotency_table(self, tenant: str) -> _Expiring:
        table = self._idempotency.get(tenant)
        if table is None:
            table = self._idempotency[tenant] = _Expiring(*self.idempotency_quota)
        return table
