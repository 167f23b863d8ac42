"""Notices a client that hangs up while its request is being handled.

Only a suspended handler needs watching: a handler that never yields finishes before
anyone could act on a disconnect, so the watcher is armed by the first suspension and
costs nothing otherwise. One long-lived task per connection (spawned on first use, never
per request) waits for the socket to become readable and peeks: EOF or reset cancels the
request; pipelined input means the client is alive and there is nothing more to learn.

Watching starts only once a suspension has lasted ``WatchDelay.delay`` (50 ms): waking the
watcher task, registering the socket and cancelling the wait again cost a proxied request 7%
of its instructions, for requests that end in a millisecond and could not be cancelled any
sooner. A client that hangs up is noticed within about twice the delay.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from .transport import Transport

log = logging.getLogger("trio_router.http")

Spawn = Callable[[Callable[[], Awaitable[object]]], None]
WATCH_DELAY = 0.05


class WatchDelay:
    """One per server: holds armed watchers until their suspension has outlasted ``delay``.

    A task ticks every ``delay`` while anything is held and starts the watchers that were held
    at the previous tick and still are; it ends at a tick that finds nothing held (the next
    ``hold`` starts another), so an idle server has no task for this and a busy one pays a
    wake-up per tick, not per request."""

    __slots__ = ("_held", "_running", "_spawn", "delay")

    def __init__(self, spawn: Spawn, delay: float = WATCH_DELAY) -> None:
        self._spawn = spawn
        self.delay = delay
        self._held: dict[DisconnectWatcher, None] = {}  # an ordered set
        self._running = False

    def hold(self, watcher: DisconnectWatcher) -> None:
        self._held[watcher] = None
        if not self._running:
            self._running = True
            self._spawn(self._run)

    def release(self, watcher: DisconnectWatcher) -> None:
        self._held.pop(watcher, None)

    async def _run(self) -> None:
        try:
            while self._held:
                held_at_tick = list(self._held)
                await trio.sleep(self.delay)
                for watcher in held_at_tick:
                    if watcher in self._held:  # suspended at both ticks: long enough to watch
                        del self._held[watcher]
                        watcher.start_watching()
        except Exception:  # a bug here must not take the server down with it
            log.exception("disconnect watch scheduler failed")
        finally:
            self._running = False


class DisconnectWatcher:
    __slots__ = (
        "_armed", "_closed", "_delay", "_lot", "_on_disconnect", "_spawn", "_started", "_transport", "_wait_scope"
    )  # fmt: skip

    def __init__(
        self, transport: Transport, on_disconnect: Callable[[], None], spawn: Spawn, delay: WatchDelay
    ) -> None:
        self._transport = transport
        self._on_disconnect = on_disconnect
        self._spawn = spawn
        self._delay = delay
        self._armed = False
        self._closed = False
        self._started = False
        self._lot = trio.lowlevel.ParkingLot()
        self._wait_scope: trio.CancelScope | None = None

    @property
    def armed(self) -> bool:
        return self._armed

    def arm(self) -> None:
        """Watch from now on (in earnest once the suspension outlasts the delay). The connection
        task must not wait on the socket until ``disarm``."""
        if self._armed or self._closed:
            return
        self._armed = True
        self._delay.hold(self)

    def start_watching(self) -> None:
        """The suspension has lasted: wait on the socket (``WatchDelay`` calls this)."""
        if not self._armed or self._closed:
            return
        if not self._started:
            self._started = True
            self._spawn(self._run)
        else:
            self._lot.unpark_all()

    def disarm(self) -> None:
        """Stop watching, so the connection task may read the socket again."""
        self._armed = False
        self._delay.release(self)
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def close(self) -> None:
        self._closed = True
        self.disarm()
        self._lot.unpark_all()

    async def _run(self) -> None:
        try:
            await self._watch()
        except Exception:  # a bug here must not take the server down with it
            log.exception("disconnect watcher failed")

    async def _watch(self) -> None:
        while not self._closed:
            if not self._armed:
                await self._lot.park()
                continue
            with trio.CancelScope() as scope:
                self._wait_scope = scope
                try:
                    await trio.lowlevel.wait_readable(self._transport.sock)
                except (trio.ClosedResourceError, OSError):
                    return
                finally:
                    self._wait_scope = None
            if scope.cancelled_caught or not self._armed:
                continue
            closed = self._transport.peer_closed()
            if closed is None:  # spurious wake-up
                continue
            self._armed = False
            if closed:
                self._on_disconnect()
