"""``State`` in Redis through coredis: shared by every worker and replica.

Every check-and-take is one Lua script, so it is atomic however many gateways race. Keys that
one script touches share a hash tag (the tenant's, ``{t:<tenant>}``), so the design works on
Redis Cluster. Calls are bounded by ``state.timeout``; a failure raises StateUnavailable and
the caller applies the configured policy. The client reconnects by itself when Redis returns.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import coredis
import trio
from coredis.exceptions import RedisError
from coredis.tokens import PureToken

from .config import KeyRecord, TenantLimits
from .state import (
    HOUR_TTL,
    MINUTE_TTL,
    PERIOD_TTL,
    Ask,
    Refused,
    Reservation,
    StateUnavailable,
    limit_values,
    period_id,
    reservation_for,
)

T = TypeVar("T")
_KEYS = "{trio-router:keys}"  # hash -> key record; and :ids, id -> hash
_TENANTS = "{trio-router:tenants}"

# KEYS: tenant period, minute, hour; key period, minute, hour.
# ARGV: cost, tokens, tenant budget/rpm/tpm, key budget/rpm/tpm (-1: none), tenant/key period ttl,
# minute and hour window ttl.
_RESERVE = """
local cost, tokens = tonumber(ARGV[1]), tonumber(ARGV[2])
local function refused(scope, first, budget, rpm, tpm)
  if budget >= 0 and tonumber(redis.call('HGET', KEYS[first], 'spend') or '0') + cost > budget then
    return {scope, 'budget'} end
  if rpm >= 0 and tonumber(redis.call('HGET', KEYS[first + 1], 'req') or '0') + 1 > rpm then
    return {scope, 'rpm'} end
  if tpm >= 0 and tonumber(redis.call('HGET', KEYS[first + 1], 'tok') or '0') + tokens > tpm then
    return {scope, 'tpm'} end
  return false
end
local no = refused('tenant', 1, tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
  or refused('key', 4, tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]))
if no then return no end
for first = 1, 4, 3 do
  redis.call('HINCRBY', KEYS[first], 'spend', cost)
  local ttl = tonumber(ARGV[first == 1 and 9 or 10])
  if ttl > 0 then redis.call('EXPIRE', KEYS[first], ttl) end
  for window = first + 1, first + 2 do
    redis.call('HINCRBY', KEYS[window], 'req', 1)
    redis.call('HINCRBY', KEYS[window], 'tok', tokens)
    redis.call('HINCRBY', KEYS[window], 'spend', cost)
    redis.call('EXPIRE', KEYS[window], window == first + 1 and tonumber(ARGV[11]) or tonumber(ARGV[12]))
  end
end
return {}
"""

# KEYS as for _RESERVE; ARGV: spend delta, token delta. Windows that expired stay gone.
_ADJUST = """
for i = 1, 6 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'spend', ARGV[1])
    if i ~= 1 and i ~= 4 then redis.call('HINCRBY', KEYS[i], 'tok', ARGV[2]) end
  end
end
return 1
"""

_SAVE_KEY = """
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then redis.call('HDEL', KEYS[1], old) end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

_DELETE_KEY = """
local hash = redis.call('HGET', KEYS[2], ARGV[1])
if not hash then return false end
local record = redis.call('HGET', KEYS[1], hash)
redis.call('HDEL', KEYS[1], hash)
redis.call('HDEL', KEYS[2], ARGV[1])
return record
"""


# A tenant's idempotency entries: KEYS entry, index (sorted set: entry -> expiry, ms), sizes
# (hash: entry -> bytes, and '#' -> the total). ARGV: value, ttl ms, max entries, max bytes, and
# '1' to store only if absent (then the present value is returned). Expired entries leave the
# index first; then the soonest to expire go until the tenant is within its quota, so a tenant
# can fill only its own share of Redis (every entry has the tenant's hash tag: one slot).
_INDEX_DROP = """
local function drop(entry)  -- from the index (not the entry itself)
  local size = redis.call('HGET', KEYS[3], entry)
  if not size then return end
  redis.call('HDEL', KEYS[3], entry)
  redis.call('ZREM', KEYS[2], entry)
  redis.call('HINCRBY', KEYS[3], '#', 0 - tonumber(size))
end
"""
_IDEMPOTENCY_PUT = (
    _INDEX_DROP
    + """
local name, value = KEYS[1], ARGV[1]
if ARGV[5] == '1' then
  local found = redis.call('GET', name)
  if found then return found end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local ttl, max_entries, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
for _, entry in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do drop(entry) end
drop(name)
redis.call('SET', name, value, 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, name)
redis.call('HSET', KEYS[3], name, string.len(value))
local total = redis.call('HINCRBY', KEYS[3], '#', string.len(value))
while redis.call('ZCARD', KEYS[2]) > max_entries or total > max_bytes do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if oldest == nil or oldest == name then break end
  redis.call('DEL', oldest)
  drop(oldest)
  total = tonumber(redis.call('HGET', KEYS[3], '#'))
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
return false
"""
)

# KEYS as for _IDEMPOTENCY_PUT.
_IDEMPOTENCY_FORGET = (
    _INDEX_DROP
    + """
redis.call('DEL', KEYS[1])
drop(KEYS[1])
return 1
"""
)


def _tag(tenant: str) -> str:
    return "{t:" + tenant + "}"


def _idempotency_keys(tenant: str, key: str) -> list[str]:
    tag = _tag(tenant)
    return [f"{tag}:idem:{key}", f"{tag}:idem-index", f"{tag}:idem-sizes"]


def _window_keys(reservation: Reservation) -> list[str]:
    tag = _tag(reservation.tenant)
    key = f"{tag}:k:{reservation.key_id}"
    return [
        f"{tag}:t:p:{reservation.tenant_period}",
        f"{tag}:t:m:{reservation.minute}",
        f"{tag}:t:h:{reservation.hour}",
        f"{key}:p:{reservation.key_period}",
        f"{key}:m:{reservation.minute}",
        f"{key}:h:{reservation.hour}",
    ]


class RedisState:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.client: Any = coredis.Redis.from_url(url, decode_responses=True)
        self._open = trio.Event()
        self._reserve = self.client.register_script(_RESERVE)
        self._adjust = self.client.register_script(_ADJUST)
        self._save_key = self.client.register_script(_SAVE_KEY)
        self._delete_key = self.client.register_script(_DELETE_KEY)
        self._idempotency_put = self.client.register_script(_IDEMPOTENCY_PUT)
        self._idempotency_forget = self.client.register_script(_IDEMPOTENCY_FORGET)
        self.idempotency_quota = (10_000, 16 * 1024 * 1024)  # entries, bytes per tenant (from the config)

    async def run(self) -> None:
        """Hold the client's connection pool open for the server's lifetime (a background task)."""
        async with self.client:
            self._open.set()
            await trio.sleep_forever()

    async def opened(self) -> None:
        """Wait until ``run`` has opened the client."""
        await self._open.wait()

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            with trio.fail_after(self.timeout):
                await self._open.wait()
                return await call
        except (RedisError, OSError, trio.TooSlowError) as exc:
            raise StateUnavailable(f"redis at {self.url}: {type(exc).__name__}: {exc}") from None

    async def reserve(self, ask: Ask) -> Reservation:
        reservation = reservation_for(ask)
        args = [
            ask.cost,
            ask.tokens,
            *limit_values(ask.tenant),
            *limit_values(ask.key),
            PERIOD_TTL[ask.tenant.budget_period],
            PERIOD_TTL[ask.key.budget_period],
            MINUTE_TTL,
            HOUR_TTL,
        ]
        refused: list[str] = await self._call(self._reserve(keys=_window_keys(reservation), args=args))
        if refused:
            raise Refused(str(refused[0]), str(refused[1]), ask.now)
        return reservation

    async def adjust(self, reservation: Reservation, cost: int, tokens: int) -> None:
        deltas = [cost - reservation.cost, tokens - reservation.tokens]
        await self._call(self._adjust(keys=_window_keys(reservation), args=deltas))

    async def velocity(self, limits: TenantLimits, now: float) -> dict[str, dict[str, int]]:
        tag = _tag(limits.name)
        period = period_id(limits.budget_period, now)
        found = {}
        for name, key, fields in (
            ("minute", f"m:{int(now // 60)}", ("req", "tok", "spend")),
            ("hour", f"h:{int(now // 3600)}", ("req", "tok", "spend")),
            ("period", f"p:{period}", ("spend",)),
        ):
            values = await self._call(self.client.hgetall(f"{tag}:t:{key}"))
            found[name] = {field: int(values.get(field, 0)) for field in fields}
        return found

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        raw = await self._call(self.client.hget(f"{_KEYS}:by-hash", key_hash))
        return KeyRecord.model_validate_json(raw) if raw else None

    async def save_key(self, record: KeyRecord) -> None:
        keys = [f"{_KEYS}:by-hash", f"{_KEYS}:by-id"]
        await self._call(self._save_key(keys=keys, args=[record.id, record.sha256, record.model_dump_json()]))

    async def delete_key(self, key_id: str) -> KeyRecord | None:
        raw: str | None = await self._call(self._delete_key(keys=[f"{_KEYS}:by-hash", f"{_KEYS}:by-id"], args=[key_id]))
        return KeyRecord.model_validate_json(raw) if raw else None

    async def keys(self) -> list[KeyRecord]:
        raw = await self._call(self.client.hgetall(f"{_KEYS}:by-hash"))
        return sorted((KeyRecord.model_validate_json(value) for value in raw.values()), key=lambda r: r.id)

    async def tenant(self, name: str) -> TenantLimits | None:
        raw = await self._call(self.client.hget(_TENANTS, name))
        return TenantLimits.model_validate_json(raw) if raw else None

    async def save_tenant(self, tenant: TenantLimits) -> None:
        await self._call(self.client.hset(_TENANTS, {tenant.name: tenant.model_dump_json()}))

    async def tenants(self) -> list[TenantLimits]:
        raw = await self._call(self.client.hgetall(_TENANTS))
        return sorted((TenantLimits.model_validate_json(value) for value in raw.values()), key=lambda t: t.name)

    async def first_use(self, tenant: str, token: str, ttl: float) -> bool:
        stored = await self._call(
            self.client.set(f"{_tag(tenant)}:sig:{token}", "1", px=int(ttl * 1000), condition=PureToken.NX)
        )
        return bool(stored)

    async def idempotency_begin(self, tenant: str, key: str, ttl: float, pending: str) -> str | None:
        found: str | None = await self._idempotency(tenant, key, pending, ttl, only_if_absent=True)
        return found

    async def idempotency_store(self, tenant: str, key: str, answer: str, ttl: float) -> None:
        await self._idempotency(tenant, key, answer, ttl, only_if_absent=False)

    async def idempotency_forget(self, tenant: str, key: str) -> None:
        await self._call(self._idempotency_forget(keys=_idempotency_keys(tenant, key)))

    async def _idempotency(self, tenant: str, key: str, value: str, ttl: float, *, only_if_absent: bool) -> Any:
        entries, size = self.idempotency_quota
        args: list[str | int] = [value, max(1, int(ttl * 1000)), entries, size, "1" if only_if_absent else "0"]
        return await self._call(self._idempotency_put(keys=_idempotency_keys(tenant, key), args=args))
