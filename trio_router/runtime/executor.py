"""Runs handlers for a server: admission first, then sync handlers in pooled greenlets and
async handlers directly on the connection's task."""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from ..settings import Settings
from .admission import Admission, handler_limit
from .current import current_request
from .greenlets import HandlerPool

log = logging.getLogger("trio_router")
MAX_IDLE_WORKERS = 1024


class HandlerRuntime:
    def __init__(self, settings: Settings) -> None:
        limit = handler_limit(settings.max_handlers)
        if settings.max_handlers == "auto":
            log.info("max_handlers auto: %d (memory and the file-descriptor limit allow it)", limit)
        # Idle workers kept for reuse: enough for a busy server's steady state; a burst beyond
        # makes new ones, which are let go afterwards instead of being held (~7 KB each).
        self.pool = HandlerPool(max_idle=min(limit, MAX_IDLE_WORKERS) if settings.pool_greenlets else 0)
        self.admission = Admission(
            limit,
            settings.handler_overflow,
            settings.handler_queue_size,
            settings.handler_queue_timeout,
            settings.retry_after,
        )

    async def call(
        self, handler: Callable[[Any], Any], is_async: bool, request: Any, on_first_suspend: Callable[[], None]
    ) -> Any:
        admission = self.admission
        if not admission.try_enter():
            on_first_suspend()  # queueing is waiting: the request's deadline and disconnect watch apply
            await admission.enter()
        token = current_request.set(request)  # handlers run in copies of this context: they see it
        try:
            if is_async:
                return await _run_watching_suspension(handler(request), on_first_suspend)
            return await self.pool.run(handler, request, on_first_suspend)
        finally:
            current_request.reset(token)
            admission.leave()


@types.coroutine
def _run_watching_suspension(
    coro: Coroutine[Any, Any, Any], on_first_suspend: Callable[[], None]
) -> Generator[Any, Any, Any]:
    """Drive ``coro`` as ``await`` would, calling ``on_first_suspend`` the first time it yields.

    A handler that never yields needs neither an armed deadline nor a disconnect watcher;
    one that does gets both at the moment it first waits, and pays nothing before.
    """
    send_value: Any = None
    error: BaseException | None = None
    notified = False
    while True:
        try:
            trap = coro.send(send_value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value
        if not notified:
            notified = True
            on_first_suspend()
        try:
            send_value = yield trap
            error = None
        except BaseException as exc:  # delivered by trio (Cancelled, ...): pass it into the handler
            send_value, error = None, exc
