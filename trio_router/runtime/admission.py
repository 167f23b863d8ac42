"""Backpressure: at most ``limit`` handlers at once; beyond it, queue (bounded in length and
time) or shed with 503 + Retry-After. Nothing waits forever."""

from __future__ import annotations

import os
import resource
from typing import Literal

import trio

from ..errors import HTTPError

Overflow = Literal["queue", "shed"]


# What one suspended sync request costs, its connection included: ~16 KB of RSS measured from
# outside (docs/benchmarks.md), doubled for a handler's own frames and a small body.
REQUEST_BUDGET_BYTES = 32 * 1024
MEMORY_SHARE = 4  # the handlers may take a quarter of the memory the process may use


def handler_limit(configured: int | Literal["auto"]) -> int:
    """``max_handlers``: as configured, or derived from memory ("auto"). Greenlets make a
    waiting sync handler cost kilobytes, not a thread, so the bound is what memory allows; and
    never more than the connections the file-descriptor limit allows, since each HTTP/1.1
    request holds its own connection."""
    if configured != "auto":
        return configured
    by_memory = _memory_limit() // MEMORY_SHARE // REQUEST_BUDGET_BYTES
    descriptors, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if descriptors == resource.RLIM_INFINITY:
        descriptors = by_memory
    return max(1, min(by_memory, descriptors))


def _memory_limit() -> int:
    """The cgroup's memory limit if there is one (a container), else the machine's memory."""
    try:
        with open("/sys/fs/cgroup/memory.max") as file:
            text = file.read().strip()
        if text.isdigit():
            return int(text)
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


class Admission:
    def __init__(self, limit: int, overflow: Overflow, queue_size: int, queue_timeout: float, retry_after: int) -> None:
        self.limit = limit
        self.overflow = overflow
        self.queue_size = queue_size
        self.queue_timeout = queue_timeout
        self._retry_after = [(b"retry-after", str(retry_after).encode())]
        self.in_use = 0
        self.waiting = 0
        self.shed = 0
        self._lot = trio.lowlevel.ParkingLot()

    def try_enter(self) -> bool:
        """The hot path: take a slot if one is free and nobody is queued ahead. No checkpoint."""
        if self.in_use < self.limit and not self.waiting:
            self.in_use += 1
            return True
        return False

    async def enter(self) -> None:
        """Wait for a slot (released slots are handed over directly, in arrival order) or shed."""
        if self.overflow == "shed" or self.waiting >= self.queue_size:
            self._shed("the server is at its handler limit")
        self.waiting += 1
        try:
            with trio.move_on_after(self.queue_timeout):
                await self._lot.park()
                return
        finally:
            self.waiting -= 1
        self._shed(f"no handler slot freed up within {self.queue_timeout:g}s")

    def leave(self) -> None:
        if self._lot:
            self._lot.unpark()  # the slot passes to the longest waiter; in_use stays the same
        else:
            self.in_use -= 1

    def _shed(self, why: str) -> None:
        self.shed += 1
        raise HTTPError(503, why, close=False, headers=list(self._retry_after))
