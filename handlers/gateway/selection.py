"""Choosing among a model's candidate backends, sans-IO. Each policy orders the candidates for
one request (the first is tried first, the rest are the retry order) and may learn from each
attempt's outcome (``observe``). The learning ones are in ``bandit``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Candidate(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def outstanding(self) -> int: ...


C = TypeVar("C", bound=Candidate)


class Selection(Protocol):
    def order(self, candidates: Sequence[C]) -> list[C]: ...
    def observe(self, name: str, ok: bool, seconds: float) -> None: ...


class _Static:
    def observe(self, name: str, ok: bool, seconds: float) -> None:
        """Outcomes do not change these policies (breakers and health checks still apply)."""


class SmoothWeightedRoundRobin(_Static):
    """nginx's smooth weighted round-robin: over any run of sum(weights) picks each backend is
    chosen exactly in proportion to its weight, interleaved rather than in bursts."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def order(self, candidates: Sequence[C]) -> list[C]:
        if len(candidates) <= 1:
            return list(candidates)
        current = self._current
        total = 0
        for candidate in candidates:
            current[candidate.name] = current.get(candidate.name, 0) + candidate.weight
            total += candidate.weight
        chosen = max(candidates, key=lambda c: current[c.name])
        current[chosen.name] -= total
        return [chosen, *sorted((c for c in candidates if c is not chosen), key=lambda c: -current[c.name])]


class LeastOutstanding(_Static):
    """The backend with the fewest requests in flight, relative to its weight."""

    def order(self, candidates: Sequence[C]) -> list[C]:
        return sorted(candidates, key=lambda c: (c.outstanding / max(c.weight, 1), c.name))
