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

On Linux there is no task per connection at all: ``SocketWatch`` puts every watched socket in
one epoll set of its own, which one task per server waits on. The task per connection was
3.8 KB of the 20.7 KB RSS a suspended request cost (docs/benchmarks.md); elsewhere that task
remains the way.
"""

from __future__ import annotations

import contextlib
import logging
import select
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

    __slots__ = ("_held", "_running", "_spawn", "delay", "sockets")

    def __init__(self, spawn: Spawn, delay: float = WATCH_DELAY) -> None:
        self._spawn = spawn
        self.delay = delay
        self._held: dict[DisconnectWatcher, None] = {}  # an ordered set
        self._running = False
        self.sockets = SocketWatch(spawn) if hasattr(select, "epoll") else None

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


class SocketWatch:
    """Every watched socket of a server in one epoll set (one-shot: a readiness is reported once
    and the socket is re-registered only if that was spurious), and one task that waits on the
    set's own descriptor and tells each watcher what it saw."""

    __slots__ = ("_epoll", "_running", "_spawn", "_wait", "_watchers")

    def __init__(self, spawn: Spawn) -> None:
        self._spawn = spawn
        self._epoll = select.epoll()
        self._watchers: dict[int, DisconnectWatcher] = {}
        self._running = False
        self._wait: trio.CancelScope | None = None

    def watch(self, watcher: DisconnectWatcher) -> int:
        """Report ``watcher``'s socket when it becomes readable or hangs up. Returns the
        descriptor it is watched under (what ``unwatch`` takes), or -1 if the socket is gone."""
        fd = watcher.fileno()
        events = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLONESHOT
        try:
            try:
                self._epoll.register(fd, events)
            except FileExistsError:  # watched before on this connection: re-arm the one-shot
                self._epoll.modify(fd, events)
        except (OSError, ValueError):  # closed already (fileno -1): nothing to watch
            return -1
        self._watchers[fd] = watcher
        if not self._running:
            self._running = True
            self._spawn(self._run)
        return fd

    def unwatch(self, watcher: DisconnectWatcher, fd: int) -> None:
        """Normally before the socket closes. ``fd`` is the number it was watched under: by now
        the socket may be closed (the kernel then dropped it from the set itself) and the number
        reused by another connection, whose registration must stay."""
        if self._watchers.get(fd) is watcher:
            del self._watchers[fd]
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)
        if not self._watchers and self._wait is not None:
            self._wait.cancel()  # nothing left to watch: the task ends (the next watch starts one)

    async def _run(self) -> None:
        """One task per server while anything is watched, parked on the set's descriptor."""
        try:
            while self._watchers:
                with trio.CancelScope() as self._wait:
                    await trio.lowlevel.wait_readable(self._epoll)
                self._wait = None
                for fd, _ in self._epoll.poll(0):
                    watcher = self._watchers.get(fd)
                    if watcher is None:
                        continue
                    if watcher.readable():
                        self.watch(watcher)  # spurious: watch on
                    else:
                        self.unwatch(watcher, fd)
        except Exception:  # a bug here must not take the server down with it
            log.exception("disconnect watch set failed")
        finally:
            self._wait = None
            self._running = False


class DisconnectWatcher:
    __slots__ = (
        "_armed", "_closed", "_delay", "_lot", "_on_disconnect", "_spawn", "_started", "_transport", "_wait_scope",
        "_watched",
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
        self._lot: trio.lowlevel.ParkingLot | None = None  # for a task of its own (no epoll)
        self._wait_scope: trio.CancelScope | None = None
        self._watched = -1  # the descriptor it is watched under in the server's epoll set

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
        sockets = self._delay.sockets
        if sockets is not None:
            self._watched = sockets.watch(self)
        elif not self._started:
            self._started = True
            self._lot = trio.lowlevel.ParkingLot()
            self._spawn(self._run)
        elif self._lot is not None:
            self._lot.unpark_all()

    def fileno(self) -> int:
        return self._transport.sock.fileno()

    def readable(self) -> bool:
        """The socket became readable or hung up while watched: act on it. True if the wake-up
        was spurious (watch on)."""
        if not self._armed or self._closed:
            return False
        closed = self._transport.peer_closed()
        if closed is None:
            return True
        self._armed = False  # alive with pipelined input, or gone: either way nothing more to learn
        if closed:
            self._on_disconnect()
        return False

    def disarm(self) -> None:
        """Stop watching, so the connection task may read the socket again."""
        self._armed = False
        self._delay.release(self)
        if self._watched >= 0:
            assert self._delay.sockets is not None
            self._delay.sockets.unwatch(self, self._watched)
            self._watched = -1
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def close(self) -> None:
        self._closed = True
        self.disarm()
        if self._lot is not None:
            self._lot.unpark_all()

    async def _run(self) -> None:
        try:
            await self._watch()
        except Exception:  # a bug here must not take the server down with it
            log.exception("disconnect watcher failed")

    async def _watch(self) -> None:
        assert self._lot is not None
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
            if not scope.cancelled_caught:
                self.readable()  # a spurious wake-up leaves it armed: wait again
