"""Costs of the trio primitives the hot path is built from, on this machine.

The scopes here deliberately hold no checkpoint: only their set-up cost is measured.

    python stress/primitives.py

Why it exists: the connection loop re-arms one cancel scope per connection instead of opening
one per request, and spawns no task per request; this shows what each choice saves.
"""

# ruff: noqa: ASYNC100
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import trio

N = 100_000


async def _timed(label: str, body: Callable[[], Awaitable[None]]) -> tuple[str, float]:
    start = time.perf_counter()
    await body()
    return label, (time.perf_counter() - start) / N * 1e6


async def new_scope_per_request() -> None:
    for _ in range(N):
        with trio.move_on_after(30):
            pass


async def rearm_one_scope() -> None:
    with trio.CancelScope() as scope:
        for _ in range(N):
            scope.deadline = trio.current_time() + 30


async def rearm_with_slack() -> None:
    with trio.CancelScope() as scope:
        for _ in range(N):
            deadline = trio.current_time() + 30
            if not 0 <= deadline - scope.deadline < 0.05:
                scope.deadline = deadline


async def checkpoint() -> None:
    for _ in range(N):
        await trio.lowlevel.checkpoint()


async def task_per_request() -> None:
    async def noop() -> None:
        pass

    async with trio.open_nursery() as nursery:
        for _ in range(N):
            nursery.start_soon(noop)


async def main() -> None:
    rows = [
        await _timed("new cancel scope (move_on_after) per request", new_scope_per_request),
        await _timed("re-arm one scope's deadline", rearm_one_scope),
        await _timed("re-arm only when it moves > 50 ms", rearm_with_slack),
        await _timed("trio checkpoint", checkpoint),
        await _timed("start_soon a task per request", task_per_request),
    ]
    print("| primitive | us each |\n|---|---:|")
    for label, micros in rows:
        print(f"| {label} | {micros:.2f} |")


if __name__ == "__main__":
    trio.run(main)
