"""The gateway's decisions, sans-IO: circuit breakers (time passed in), selection policies and
the order backends are tried in."""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass

import pytest

from handlers.gateway import proxy
from handlers.gateway.backends import Registry
from handlers.gateway.bandit import UCB1, ThompsonSampling
from handlers.gateway.breaker import BreakerPolicy, CircuitBreaker, State
from handlers.gateway.config import BackendConfig, GatewayConfig
from handlers.gateway.selection import LeastOutstanding, SmoothWeightedRoundRobin


def test_breaker_opens_on_a_failure_streak_and_probes_with_growing_backoff() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_streak=5, base_backoff=30, max_backoff_factor=16))
    for second in range(4):
        breaker.record(False, second)
    assert breaker.state is State.CLOSED and breaker.allow(4)
    breaker.record(False, 4)
    assert breaker.state is State.OPEN and not breaker.allow(33.9)
    assert breaker.allow(34)  # half-open: one probe...
    assert breaker.state is State.HALF_OPEN and not breaker.allow(34)  # ...and only one
    breaker.record(False, 35)  # the probe failed: open again, twice as long
    assert breaker.open_until == 35 + 60
    opened_at = 95.0
    for _ in range(6):  # keep failing probes: the backoff doubles up to 16x and stays there
        assert breaker.allow(opened_at)
        breaker.record(False, opened_at)
        opened_at = breaker.open_until
    assert breaker.backoff() == 30 * 16
    assert breaker.allow(opened_at)
    breaker.record(True, opened_at)  # a successful probe closes it and resets the backoff
    assert breaker.state is State.CLOSED and breaker.backoff() == 30


def test_breaker_opens_on_the_error_ratio_over_its_window() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_streak=100, error_ratio=0.5, min_requests=10, window=60))
    for second in range(9):
        breaker.record(second % 2 == 0, second)  # 4 failures of 9: too few requests anyway
    assert breaker.state is State.CLOSED
    breaker.record(False, 9)  # 5 of 10
    assert breaker.state is State.OPEN
    calm = CircuitBreaker(BreakerPolicy(failure_streak=100, min_requests=10, window=60))
    for second in range(10):
        calm.record(False, second * 100.0)  # failures, but never 10 inside one window
    assert calm.state is State.CLOSED


@dataclass
class Arm:
    name: str
    weight: int
    outstanding: int = 0


def test_smooth_weighted_round_robin_is_exact_and_interleaved() -> None:
    policy = SmoothWeightedRoundRobin()
    arms = [Arm("a", 5), Arm("b", 1), Arm("c", 1)]
    picks = [policy.order(arms)[0].name for _ in range(70)]
    assert collections.Counter(picks) == {"a": 50, "b": 10, "c": 10}
    assert picks[:7] == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's sequence, not aaaaabc
    assert sorted(arm.name for arm in policy.order(arms)) == ["a", "b", "c"]  # the rest follow, for retries


def test_least_outstanding_relative_to_weight() -> None:
    arms = [Arm("a", 2, outstanding=3), Arm("b", 1, outstanding=1), Arm("c", 1, outstanding=2)]
    assert [arm.name for arm in LeastOutstanding().order(arms)] == ["b", "a", "c"]


def test_plan_skips_unhealthy_and_open_backends_then_tries_fallback_models() -> None:
    config = GatewayConfig(fallbacks={"big": ["small"]})
    registry = Registry(config)
    for name, models in (("b1", ["big"]), ("b2", ["big"]), ("b3", ["small"]), ("b4", ["small"])):
        registry.add(BackendConfig(name=name, url=f"http://{name}:8000", models=models))
    registry.backends["b2"].healthy = False
    for second in range(5):
        registry.backends["b3"].record(False, 0.1, second)  # its breaker opens
    assert [(b.name, model) for b, model in registry.plan("big", 10)] == [("b1", "big"), ("b4", "small")]
    assert registry.models() == ["big", "small"]
    assert BackendConfig(name="x", url="http://h:8000", models=["m"]).health() == "http://h:8001/health"


@pytest.mark.parametrize("policy", [ThompsonSampling, UCB1])
def test_bandits_converge_to_the_better_backend(policy: type[ThompsonSampling] | type[UCB1]) -> None:
    rng = random.Random(7)
    bandit = policy(rng=random.Random(11))
    arms = [Arm("fast", 1), Arm("flaky", 1), Arm("slow", 1)]
    truth = {"fast": (0.97, 0.2), "flaky": (0.6, 0.2), "slow": (0.97, 1.5)}  # success rate, latency
    first_picks = []
    for _ in range(3):
        chosen = bandit.order(arms)[0].name
        first_picks.append(chosen)
        bandit.observe(chosen, True, truth[chosen][1])
    assert sorted(first_picks) == ["fast", "flaky", "slow"]  # every arm is tried before any is repeated
    late = []
    for round_number in range(1500):
        chosen = bandit.order(arms)[0].name
        success, latency = truth[chosen]
        bandit.observe(chosen, rng.random() < success, latency)
        if round_number >= 1300:
            late.append(chosen)
    assert collections.Counter(late)["fast"] >= 170  # of the last 200


def test_ucb_exploration_decays_and_the_floor_demotes_a_failing_backend() -> None:
    bandit = UCB1()
    assert bandit.exploration() == 1.5
    for _ in range(250):
        bandit.observe("bad", False, 0.1)
        bandit.observe("good", True, 5.0)  # slow but working
    assert bandit.exploration() == 0.5  # 500 samples: fully decayed
    assert [arm.name for arm in bandit.order([Arm("bad", 1), Arm("good", 1)])] == ["good", "bad"]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, 1.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("-3", 1.0),
        ("soon", 1.0),
        ("9" * 20, 1.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_is_seconds_or_a_date_else_the_default(header: str | None, seconds: float) -> None:
    assert proxy._retry_after(header, 1.0) == seconds
