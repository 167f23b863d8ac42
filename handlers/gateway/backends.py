"""The backends the gateway knows, their live state, and the order to try them in for a model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .bandit import UCB1, ThompsonSampling
from .breaker import BreakerPolicy, CircuitBreaker
from .config import BackendConfig, GatewayConfig
from .selection import LeastOutstanding, Selection, SmoothWeightedRoundRobin

POLICIES: dict[str, type[Selection]] = {
    "weighted_round_robin": SmoothWeightedRoundRobin,
    "least_outstanding": LeastOutstanding,
    "thompson": ThompsonSampling,
    "ucb1": UCB1,
}

_EWMA = 0.2  # weight of the newest latency sample


@dataclass(eq=False)
class Backend:
    config: BackendConfig
    breaker: CircuitBreaker
    source: str = "config"  # config | admin | registry
    healthy: bool = True  # until health checks say otherwise
    drained: bool = False  # no new requests (admin); those in flight finish
    missing_since: float | None = None  # when the registry stopped listing it
    failed_checks: int = 0
    outstanding: int = 0
    requests: int = 0
    failures: int = 0
    rate_limited: int = 0  # 429 answers
    cooling_until: float = 0.0  # after a 429: no new requests before this (its Retry-After)
    latency_ewma: float | None = None  # seconds to the answer: the head of a stream, the whole of any other
    health_latency: float | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def weight(self) -> int:
        return self.config.weight

    def record(self, ok: bool, seconds: float, now: float) -> None:
        self.requests += 1
        self.failures += not ok
        if ok:
            self.latency_ewma = (
                seconds if self.latency_ewma is None else _EWMA * seconds + (1 - _EWMA) * self.latency_ewma
            )
        self.breaker.record(ok, now)

    def stats(self) -> dict[str, object]:
        return {
            "name": self.name,
            "url": self.config.url,
            "models": self.config.models,
            "role": self.config.role,
            "weight": self.weight,
            "healthy": self.healthy,
            "drained": self.drained,
            "source": self.source,
            "breaker": self.breaker.state.value,
            "outstanding": self.outstanding,
            "requests": self.requests,
            "failures": self.failures,
            "rate_limited": self.rate_limited,
            "latency_ewma_ms": None if self.latency_ewma is None else round(self.latency_ewma * 1000, 3),
            "health_latency_ms": None if self.health_latency is None else round(self.health_latency * 1000, 3),
        }


@dataclass
class Registry:
    config: GatewayConfig
    backends: dict[str, Backend] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)  # model -> the one backend to use (admin)
    admin_port: int | None = None
    _policies: dict[str, Selection] = field(default_factory=dict)  # by role:model

    def add(self, config: BackendConfig, source: str = "config") -> Backend:
        policy = BreakerPolicy(**self.config.breaker.model_dump())
        backend = self.backends[config.name] = Backend(config, CircuitBreaker(policy), source)
        return backend

    def remove(self, name: str) -> None:
        """Out of routing now; requests in flight hold their Backend and finish."""
        self.backends.pop(name, None)
        self.pins = {model: pinned for model, pinned in self.pins.items() if pinned != name}

    def models(self) -> list[str]:
        """Models some healthy backend serves, each once, in configuration order."""
        seen: dict[str, None] = {}
        for backend in self.backends.values():
            if backend.healthy:
                seen.update(dict.fromkeys(backend.config.models))
        return list(seen)

    def knows(self, model: str) -> bool:
        return any(model in backend.config.models for backend in self.backends.values())

    def plan(self, model: str, now: float, role: str = "unified") -> Iterator[tuple[Backend, str]]:
        """(backend, model) pairs to try in order: the model's candidates with ``role`` as its
        policy orders them, then (unified only) each fallback model's. Unhealthy, drained,
        cooling (rate-limited) backends and open breakers are skipped; a breaker is asked only
        when its backend's turn comes (a half-open one admits one probe)."""
        for wanted in self._models(model, role):
            candidates = [b for b in self._available(wanted, role) if b.cooling_until <= now]
            pinned = self.pins.get(wanted)
            if pinned is not None and role == "unified":
                candidates = [b for b in candidates if b.name == pinned]
            for backend in self._policy(wanted, role).order(candidates):
                if backend.breaker.allow(now):
                    yield backend, wanted

    def _models(self, model: str, role: str) -> list[str]:
        return [model, *self.config.fallbacks.get(model, [])] if role == "unified" else [model]

    def cooling(self, model: str, now: float) -> float | None:
        """Seconds until the first of the model's backends (and its fallbacks') may be asked
        again, when every one of them is cooling down after a 429; else None."""
        serving = [b for wanted in self._models(model, "unified") for b in self._available(wanted, "unified")]
        if not serving or any(b.cooling_until <= now for b in serving):
            return None
        return min(b.cooling_until for b in serving) - now

    def retry_after(self, model: str, now: float) -> float:
        """When to try again a model none of whose backends can be asked now: the first open
        breaker's half-open time, else the next health check."""
        reopening = [
            b.breaker.open_until - now
            for wanted in self._models(model, "unified")
            for b in self._available(wanted, "unified")
            if b.breaker.open_until > now
        ]
        return min(reopening) if reopening else self.config.health_interval

    def disaggregated(self, model: str) -> bool:
        """Whether prefill and decode backends serve ``model`` now (two-phase routing applies)."""
        return bool(self._available(model, "prefill")) and bool(self._available(model, "decode"))

    def _available(self, model: str, role: str) -> list[Backend]:
        return [
            b
            for b in self.backends.values()
            if model in b.config.models and b.healthy and not b.drained and b.config.role == role
        ]

    def record(self, backend: Backend, model: str, ok: bool, seconds: float, now: float) -> None:
        """An attempt's outcome: the backend's counters and breaker, and the model's policy."""
        backend.record(ok, seconds, now)
        self._policy(model, backend.config.role).observe(backend.name, ok, seconds)

    def record_broken_stream(self, backend: Backend, model: str, seconds: float, now: float) -> None:
        """A stream that began well (already counted as a success) and then died."""
        backend.failures += 1
        backend.breaker.record(False, now)
        self._policy(model, backend.config.role).observe(backend.name, False, seconds)

    def _policy(self, model: str, role: str = "unified") -> Selection:
        """The model's selection policy for backends of ``role`` (each keeps its own state)."""
        key = f"{role}:{model}"
        policy = self._policies.get(key)
        if policy is None:
            name = self.config.model_policies.get(model, self.config.policy)
            policy = self._policies[key] = POLICIES[name]()
        return policy
