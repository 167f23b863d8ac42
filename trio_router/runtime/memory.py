"""What a suspended handler costs in memory, measured rather than guessed.

N requests are suspended at once, each in a trio task waiting on an event, once as a
sync handler in a worker greenlet (waiting through the bridge) and once as plain async
code; the difference per request is the greenlet's share (its object, its frames and the
slice of C stack greenlet copies to the heap on every switch out). Measured with
tracemalloc (Python-level allocations, greenlet's stack copies included) and RSS.

    trio-router diagnose --count 10000

Each figure comes from a fresh interpreter, so nothing else the process did counts.
"""

from __future__ import annotations

import gc
import resource
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass

import trio
import trio.testing

from .bridge import await_
from .greenlets import HandlerPool


@dataclass(frozen=True)
class MemoryReport:
    count: int
    greenlet_traced: int  # bytes traced with N sync handlers suspended
    async_traced: int  # bytes traced with N async handlers suspended
    greenlet_rss: int  # RSS growth (bytes) with N sync handlers suspended, in a fresh process
    async_rss: int  # the same for N async handlers

    @property
    def per_handler(self) -> float:
        """Bytes per suspended sync handler, task included."""
        return self.greenlet_traced / self.count

    @property
    def greenlet_share(self) -> float:
        """Bytes per suspended handler that the greenlet adds over the same wait in async code."""
        return (self.greenlet_traced - self.async_traced) / self.count

    def render(self) -> str:
        return (
            f"{self.count} handlers suspended at once\n"
            f"  per sync handler (greenlet + its trio task): {self.per_handler:,.0f} bytes traced\n"
            f"  the greenlet's share over async code:        {self.greenlet_share:,.0f} bytes traced\n"
            f"  RSS growth per sync handler:                 {self.greenlet_rss / self.count:,.0f} bytes\n"
            f"  the greenlet's share of RSS over async code: {(self.greenlet_rss - self.async_rss) / self.count:,.0f}"
            " bytes (includes the C stack slice greenlet saves, which tracemalloc does not see)"
        )


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _sync_handler(release: trio.Event) -> None:
    await_(release.wait())


async def _suspend_all(count: int, use_greenlets: bool, trace: bool) -> int:
    """Suspend ``count`` handlers; return the bytes traced (or, untraced, the RSS growth) while
    they are all waiting. RSS is measured without tracemalloc, whose own records would count."""
    pool = HandlerPool(max_idle=count)
    release = trio.Event()
    gc.collect()
    rss_before = _rss_bytes()
    if trace:
        tracemalloc.start()

    async def one() -> None:
        if use_greenlets:
            await pool.run(_sync_handler, release, lambda: None)
        else:
            await release.wait()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        if trace:
            measured = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
        else:
            measured = _rss_bytes() - rss_before
        release.set()
    pool.close()
    return measured


async def _warm_then_measure(count: int, use_greenlets: bool, trace: bool) -> int:
    if trace:  # lazy imports and caches must not count (RSS is measured cold: reuse would hide growth)
        await _suspend_all(min(count, 100), use_greenlets, trace=False)
    return await _suspend_all(count, use_greenlets, trace)


def _command(count: int, use_greenlets: bool, trace: bool) -> list[str]:
    return [sys.executable, "-m", "trio_router.runtime.memory", str(count), str(int(use_greenlets)), str(int(trace))]


def _in_fresh_process(count: int, use_greenlets: bool, trace: bool) -> int:
    """Measure in a new interpreter: one that has already allocated and freed as much would
    reuse that memory, and one with a history has other objects dying at random moments."""
    done = subprocess.run(_command(count, use_greenlets, trace), capture_output=True, text=True, check=True)
    return int(done.stdout)


async def traced_bytes_per_suspended_handler(count: int = 200) -> float:
    """The figure for the metrics, from a fresh interpreter so the server itself is not disturbed."""
    done = await trio.run_process(_command(count, use_greenlets=True, trace=True), capture_stdout=True)
    return int(done.stdout) / count


def measure_suspended_handlers(count: int) -> MemoryReport:
    return MemoryReport(
        count,
        greenlet_traced=_in_fresh_process(count, use_greenlets=True, trace=True),
        async_traced=_in_fresh_process(count, use_greenlets=False, trace=True),
        greenlet_rss=_in_fresh_process(count, use_greenlets=True, trace=False),
        async_rss=_in_fresh_process(count, use_greenlets=False, trace=False),
    )


if __name__ == "__main__":
    print(trio.run(_warm_then_measure, int(sys.argv[1]), sys.argv[2] == "1", sys.argv[3] == "1"))
