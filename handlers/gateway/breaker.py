"""A circuit breaker per backend, sans-IO (time comes in as ``now``, so tests drive it exactly).

Closed: requests flow. It opens on ``failure_streak`` consecutive failures, or when at least
``error_ratio`` of the requests in the last ``window`` seconds failed (with at least
``min_requests`` of them). Open: no requests until the backoff passes (``base_backoff`` doubled at
each reopening, capped at ``max_backoff_factor`` times); then half-open: one probe request. Its
success closes the breaker (and resets the backoff), its failure opens it again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum


class State(Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class BreakerPolicy:
    failure_streak: int = 5
    error_ratio: float = 0.5
    min_requests: int = 10
    window: float = 60.0
    base_backoff: float = 30.0
    max_backoff_factor: int = 16


@dataclass
class CircuitBreaker:
    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    state: State = State.CLOSED
    streak: int = 0
    reopenings: int = 0  # consecutive openings without a successful probe: the backoff's exponent
    open_until: float = 0.0
    probing: bool = False
    _outcomes: deque[tuple[float, bool]] = field(default_factory=deque)
    _failures_in_window: int = 0

    def allow(self, now: float) -> bool:
        """May a request go to this backend now? (In half-open state, only the one probe.)"""
        if self.state is State.CLOSED:
            return True
        if self.state is State.OPEN:
            if now < self.open_until:
                return False
            self.state, self.probing = State.HALF_OPEN, False
        if self.probing:
            return False
        self.probing = True
        return True

    def record(self, ok: bool, now: float) -> None:
        self._remember(ok, now)
        if self.state is State.HALF_OPEN:
            if ok:
                self.state, self.streak, self.reopenings, self.probing = State.CLOSED, 0, 0, False
            else:
                self._open(now)
            return
        self.streak = 0 if ok else self.streak + 1
        if self.state is State.CLOSED and (self.streak >= self.policy.failure_streak or self._ratio_tripped()):
            self._open(now)

    def backoff(self) -> float:
        factor = min(2 ** max(self.reopenings - 1, 0), self.policy.max_backoff_factor)
        return float(self.policy.base_backoff * factor)

    def _open(self, now: float) -> None:
        self.reopenings += 1
        self.state, self.probing, self.streak = State.OPEN, False, 0
        self.open_until = now + self.backoff()
        self._outcomes.clear()
        self._failures_in_window = 0

    def _remember(self, ok: bool, now: float) -> None:
        outcomes = self._outcomes
        outcomes.append((now, ok))
        self._failures_in_window += not ok
        horizon = now - self.policy.window
        while outcomes and outcomes[0][0] < horizon:
            _, old_ok = outcomes.popleft()
            self._failures_in_window -= not old_ok

    def _ratio_tripped(self) -> bool:
        total = len(self._outcomes)
        return total >= self.policy.min_requests and self._failures_in_window >= self.policy.error_ratio * total
