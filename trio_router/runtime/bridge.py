"""The bridge from synchronous handler code to trio: ``await_`` and what is built on it."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TypeVar

import greenlet
import trio

from .greenlets import AWAIT, HandlerGreenlet

T = TypeVar("T")


class BridgeError(RuntimeError):
    """``await_`` was called where there is no handler greenlet to suspend."""


def await_(awaitable: Awaitable[T]) -> T:
    """Run a trio awaitable from a synchronous handler and return its result (or raise its error).

    The handler's greenlet is suspended while the connection's trio task awaits; other
    connections run meanwhile. Cancellation (deadline, disconnect, shutdown) arrives here as
    ``trio.Cancelled``.
    """
    current = greenlet.getcurrent()
    if not isinstance(current, HandlerGreenlet):
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # it will never run: spare the user a "never awaited" warning
        raise BridgeError(
            "trio_router.await_() needs a synchronous handler to suspend, but it was called from "
            + (
                "code running on the trio task itself (async code, or sync code that async code called); "
                "use `await` there"
                if _inside_trio()
                else "outside any trio-router handler"
            )
        )
    driver = current.parent
    assert driver is not None  # a worker is always created with the trio thread's main greenlet as parent
    result: T = driver.switch((AWAIT, awaitable))
    return result


def _inside_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


def sleep(seconds: float) -> None:
    """``trio.sleep`` for synchronous handlers: other requests run while this one waits."""
    await_(trio.sleep(seconds))  # noqa: ASYNC105 (the bridge awaits it)


def in_handler() -> bool:
    """True in a synchronous handler's greenlet, where ``await_`` may be called."""
    return isinstance(greenlet.getcurrent(), HandlerGreenlet)
