"""Synchronous handlers in pooled worker greenlets, driven from the connection's trio task.

The model is BRRTRouter's May coroutines: a handler is plain blocking code, yet costs no
thread. A worker greenlet runs the handler; when the handler needs I/O it calls
``await_``, which switches back to the trio task (the *driver*) with the awaitable; the
driver awaits it like any async code (so trio's cancel scopes, deadlines and checkpoints
apply) and switches back in with the result, or throws the exception in, ``Cancelled``
included.

Workers are long-lived and loop over jobs: a new greenlet's first switch costs ~8-10 us,
a switch into a pooled one ~0.35 us.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, Final

import greenlet

# What a worker hands its driver: (kind, value).
AWAIT: Final = 0  # value: an awaitable to await on the trio task
DONE: Final = 1  # value: the handler's result
FAILED: Final = 2  # value: the exception the handler raised

Job = Callable[[Any], Any]


class HandlerGreenlet(greenlet.greenlet):
    """A worker: runs one job at a time and parks between jobs."""

    def run(self, job: Job | None, argument: Any) -> None:
        driver = self.parent
        assert driver is not None
        while True:
            assert job is not None
            try:
                outcome = (DONE, job(argument))
            except BaseException as exc:  # handed to the driver, which decides; the worker lives on
                outcome = (FAILED, exc)
            job = argument = None  # drop references while parked
            job, argument = driver.switch(outcome)


class HandlerPool:
    """Pooled worker greenlets plus the counts the metrics need.

    ``active`` counts handlers in progress (running or suspended), ``suspended`` those
    waiting on the bridge, ``pooled`` idle workers ready for reuse.
    """

    def __init__(self, max_idle: int) -> None:
        self.max_idle = max_idle
        self._idle: list[HandlerGreenlet] = []
        self.active = 0
        self.suspended = 0
        self.created = 0

    @property
    def pooled(self) -> int:
        return len(self._idle)

    def _acquire(self) -> HandlerGreenlet:
        if self._idle:
            return self._idle.pop()
        self.created += 1
        return HandlerGreenlet(parent=greenlet.getcurrent())

    def _release(self, worker: HandlerGreenlet) -> None:
        if len(self._idle) < self.max_idle and not worker.dead:
            self._idle.append(worker)

    def close(self) -> None:
        """End the idle workers now, rather than whenever the garbage collector finds them
        (a parked greenlet collected later is killed then, allocating at a random moment)."""
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.throw(greenlet.GreenletExit)

    async def run(self, job: Job, argument: Any, on_first_suspend: Callable[[], None]) -> Any:
        """Run ``job(argument)`` in a worker greenlet, serving its bridge calls until it returns.

        Each job runs in a fresh copy of the caller's context, so contextvars it sets are
        visible to what it calls but never to the next job on the same worker.
        """
        worker = self._acquire()
        if worker.parent is not greenlet.getcurrent():
            raise RuntimeError("handler greenlets must be driven from the trio thread's main greenlet")
        worker.gr_context = contextvars.copy_context()
        self.active += 1
        try:
            kind, value = worker.switch(job, argument)
            if kind == AWAIT:
                kind, value = await self._serve_bridge(worker, value, on_first_suspend)
        finally:
            self.active -= 1
        worker.gr_context = None
        self._release(worker)
        if kind == FAILED:
            raise value
        return value

    async def _serve_bridge(
        self, worker: HandlerGreenlet, awaitable: Awaitable[Any], on_first_suspend: Callable[[], None]
    ) -> tuple[int, Any]:
        on_first_suspend()
        kind = AWAIT
        value: Any = awaitable
        while kind == AWAIT:
            self.suspended += 1
            try:
                result = await value
            except BaseException as exc:  # Cancelled included: delivered at the handler's bridge call
                self.suspended -= 1
                kind, value = worker.throw(exc)
            else:
                self.suspended -= 1
                kind, value = worker.switch(result)
        return kind, value
