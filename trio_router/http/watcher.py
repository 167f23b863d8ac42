"""Notices a client that hangs up while its request is being handled.

Only a suspended handler needs watching: a handler that never yields finishes before
anyone could act on a disconnect, so the watcher is armed by the first suspension and
costs nothing otherwise. One long-lived task per connection (spawned on first use, never
per request) waits for the socket to become readable and peeks: EOF or reset cancels the
request; pipelined input means the client is alive and there is nothing more to learn.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from .transport import Transport

log = logging.getLogger("trio_router.http")

Spawn = Callable[[Callable[[], Awaitable[object]]], None]


class DisconnectWatcher:
    __slots__ = ("_armed", "_closed", "_lot", "_on_disconnect", "_spawn", "_started", "_transport", "_wait_scope")

    def __init__(self, transport: Transport, on_disconnect: Callable[[], None], spawn: Spawn) -> None:
        self._transport = transport
        self._on_disconnect = on_disconnect
        self._spawn = spawn
        self._armed = False
        self._closed = False
        self._started = False
        self._lot = trio.lowlevel.ParkingLot()
        self._wait_scope: trio.CancelScope | None = None

    @property
    def armed(self) -> bool:
        return self._armed

    def arm(self) -> None:
        """Start watching. The connection task must not wait on the socket until ``disarm``."""
        if self._armed or self._closed:
            return
        self._armed = True
        if not self._started:
            self._started = True
            self._spawn(self._run)
        else:
            self._lot.unpark_all()

    def disarm(self) -> None:
        """Stop watching, so the connection task may read the socket again."""
        self._armed = False
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
