"""Bridge and pool overhead, in microseconds per operation.

    python stress/bridge.py

- a trio checkpoint awaited in async code vs the same checkpoint through ``await_`` from a
  sync handler's greenlet (two greenlet switches on top);
- running a trivial sync job in a pooled worker greenlet vs in a new greenlet each time.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

from trio_router import await_
from trio_router.runtime.greenlets import HandlerPool

N = 100_000


def _noop() -> None:
    pass


async def _per_op(body: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await body()
    return (time.perf_counter() - start) / N * 1e6


async def checkpoints_in_async_code() -> None:
    for _ in range(N):
        await trio.lowlevel.checkpoint()


async def checkpoints_through_the_bridge() -> None:
    def handler(_: object) -> None:
        for _ in range(N):
            await_(trio.lowlevel.checkpoint())  # noqa: ASYNC105 (the bridge awaits it)

    await HandlerPool(max_idle=1).run(handler, None, _noop)


def _jobs(max_idle: int) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        pool = HandlerPool(max_idle=max_idle)
        for _ in range(N):
            await pool.run(lambda _: None, None, _noop)

    return run


async def main() -> None:
    rows = [
        ("checkpoint in async code", await _per_op(checkpoints_in_async_code)),
        ("checkpoint through await_ from a sync handler", await _per_op(checkpoints_through_the_bridge)),
        ("trivial sync handler, pooled greenlet", await _per_op(_jobs(max_idle=1))),
        ("trivial sync handler, new greenlet each time", await _per_op(_jobs(max_idle=0))),
    ]
    print("| operation | us each |\n|---|---:|")
    for label, micros in rows:
        print(f"| {label} | {micros:.2f} |")


if __name__ == "__main__":
    trio.run(main)
