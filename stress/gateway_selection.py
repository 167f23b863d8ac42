"""What choosing a backend costs the gateway: one `Registry.plan` (candidates, policy order,
breaker checks) plus recording the outcome, for 8 backends serving the model.

    python stress/gateway_selection.py [--rounds 20000]

Reported per request in microseconds, p50 and p99 over the rounds, for each policy, and the
breaker check alone (targets: selection < 1 ms p99, breaker check < 0.1 ms).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from handlers.gateway.backends import Registry
from handlers.gateway.breaker import CircuitBreaker
from handlers.gateway.config import BackendConfig, GatewayConfig


def measure(policy: str, rounds: int) -> list[float]:
    registry = Registry(GatewayConfig(policy=policy))  # type: ignore[arg-type]
    for n in range(8):
        registry.add(BackendConfig(name=f"b{n}", url=f"http://10.0.0.{n}:8000", models=["m"], weight=1 + n % 3))
    rng = random.Random(1)
    samples = []
    now = 0.0
    for _ in range(rounds):
        now += 0.001
        start = time.perf_counter_ns()
        backend, model = next(registry.plan("m", now))
        registry.record(backend, model, rng.random() < 0.98, rng.uniform(0.05, 0.5), now)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def breaker_checks(rounds: int) -> list[float]:
    breaker = CircuitBreaker()
    samples = []
    for n in range(rounds):
        start = time.perf_counter_ns()
        breaker.allow(n * 0.001)
        breaker.record(n % 50 != 0, n * 0.001)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    print(f"{'case (8 backends)':40} {'p50 us':>8} {'p99 us':>8}")
    cases = {p: measure(p, args.rounds) for p in ("weighted_round_robin", "least_outstanding", "thompson", "ucb1")}
    cases["breaker allow + record"] = breaker_checks(args.rounds)
    for name, samples in cases.items():
        quantiles = statistics.quantiles(samples, n=100)
        print(f"{name:40} {quantiles[49]:8.2f} {quantiles[98]:8.2f}")


if __name__ == "__main__":
    main()
