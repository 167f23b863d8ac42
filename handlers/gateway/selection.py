"""Choosing among a model's candidate backends, sans-IO. Each policy orders the candidates for
one request: the first is tried first, the rest are the retry order."""

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


class SmoothWeightedRoundRobin:
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


class LeastOutstanding:
    """The backend with the fewest requests in flight, relative to its weight."""

    def order(self, candidates: Sequence[C]) -> list[C]:
        return sorted(candidates, key=lambda c: (c.outstanding / max(c.weight, 1), c.name))


Selection = SmoothWeightedRoundRobin | LeastOutstanding
POLICIES: dict[str, type[Selection]] = {
    "weighted_round_robin": SmoothWeightedRoundRobin,
    "least_outstanding": LeastOutstanding,
}
