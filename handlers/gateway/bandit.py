"""Learning which backend serves a model best: Thompson sampling and UCB1, sans-IO.

Each attempt's outcome becomes a reward in [0, 1]: 0 for a failure, else
``1 / (1 + latency / latency_scale)`` (a 0.5 s answer scores 2/3 at the default scale of 1 s).
Per arm the mean and variance of its rewards are kept (Welford), and:

- Thompson sampling draws from each arm's Gaussian posterior of the mean,
  N(mean, (variance + prior) / (n + 1)), and ranks arms by their draws;
- UCB1 ranks by ``mean + c * sqrt(ln N / n)``, the exploration coefficient ``c`` going down
  linearly from 1.5 to 0.5 over the first 500 samples (explore early, exploit later).

Both try never-tried arms first. The hard floor: an arm whose success rate over at least
``floor_samples`` attempts is below ``min_success`` is ranked after every arm above the floor
(it is still tried when nothing better is left, as a retry).
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from .selection import C


@dataclass
class Arm:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations (Welford)
    successes: int = 0

    def add(self, reward: float, ok: bool) -> None:
        self.n += 1
        self.successes += ok
        delta = reward - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (reward - self.mean)

    @property
    def variance(self) -> float:
        return self.m2 / (self.n - 1) if self.n > 1 else 0.25  # a wide prior before two samples


@dataclass
class BanditSettings:
    latency_scale: float = 1.0
    prior_variance: float = 0.01
    c_start: float = 1.5
    c_end: float = 0.5
    decay_samples: int = 500
    min_success: float = 0.5
    floor_samples: int = 20


class _Bandit(ABC):
    def __init__(self, settings: BanditSettings | None = None, rng: random.Random | None = None) -> None:
        self.settings = settings or BanditSettings()
        self.rng = rng or random.Random()
        self.arms: dict[str, Arm] = {}
        self.total = 0

    def observe(self, name: str, ok: bool, seconds: float) -> None:
        reward = 1 / (1 + seconds / self.settings.latency_scale) if ok else 0.0
        self.arms.setdefault(name, Arm()).add(reward, ok)
        self.total += 1

    def order(self, candidates: Sequence[C]) -> list[C]:
        arms = self.arms
        untried = [c for c in candidates if c.name not in arms or arms[c.name].n == 0]
        tried = [c for c in candidates if c not in untried]
        scores = {c.name: self._score(arms[c.name]) for c in tried}
        floor = self.settings
        below = {
            c.name
            for c in tried
            if arms[c.name].n >= floor.floor_samples and arms[c.name].successes / arms[c.name].n < floor.min_success
        }
        tried.sort(key=lambda c: (c.name in below, -scores[c.name]))
        return [*untried, *tried]

    @abstractmethod
    def _score(self, arm: Arm) -> float:
        """How good ``arm`` looks now (the ranking key): the policy's whole difference."""


class ThompsonSampling(_Bandit):
    def _score(self, arm: Arm) -> float:
        spread = math.sqrt((arm.variance + self.settings.prior_variance) / (arm.n + 1))
        return self.rng.gauss(arm.mean, spread)


class UCB1(_Bandit):
    def exploration(self) -> float:
        s = self.settings
        progress = min(self.total / s.decay_samples, 1.0)
        return s.c_start + (s.c_end - s.c_start) * progress

    def _score(self, arm: Arm) -> float:
        return arm.mean + self.exploration() * math.sqrt(math.log(max(self.total, 1)) / arm.n)
