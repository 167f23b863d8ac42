"""Non-blocking socket I/O for one connection, straight on trio's lowlevel wait primitives.

Why not ``trio.SocketStream``: it adds a conflict detector, error translation and two
scheduler round-trips per call; on a 2-core box that is measurable against the bare
trio + h11 floor. Owning the socket also lets the disconnect watcher peek at it and lets
a send try the fast path (the kernel buffer has room) without arming any timeout.

Cancellation rule: every wait is a trio checkpoint, so deadlines on the connection's
cancel scope interrupt them. The fast paths do not yield; the connection loop yields
once per request (see ``HTTPConnection._await_request``) so pipelined input cannot
starve other connections.
"""

from __future__ import annotations

import errno
import socket

import trio

_EOF_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ECONNABORTED, errno.ETIMEDOUT})


class PeerGone(Exception):
    """The peer reset or closed the connection while we were sending."""


class SendTimeout(Exception):
    """The peer stopped reading for longer than the per-send timeout."""


class Transport:
    """One accepted TCP socket in non-blocking mode."""

    __slots__ = ("_closed", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a Unix socket in tests): nothing to disable
            pass
        self.sock = sock
        self._closed = False

    async def recv(self, max_bytes: int) -> bytes:
        """Bytes from the peer; ``b""`` on EOF or reset (both mean: no more input)."""
        sock = self.sock
        while True:
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
            except OSError as exc:
                if exc.errno in _EOF_ERRNOS:
                    return b""
                raise

    def recv_nowait(self, max_bytes: int) -> bytes | None:
        """What the kernel holds now (``b""`` at EOF or reset), or None when nothing has arrived."""
        try:
            return self.sock.recv(max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in _EOF_ERRNOS:
                return b""
            raise

    async def recv_next(self, max_bytes: int) -> bytes:
        """Like ``recv``, but always a checkpoint (the connection loop's one yield per request,
        so a client that keeps the next request ready cannot starve the others). Under load the
        next request is usually there already: trying recv() first saves the readiness
        registration (an epoll_ctl syscall) and the wait's scheduler round trip that waiting
        first cost on every request."""
        sock = self.sock
        try:
            data = sock.recv(max_bytes)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            return await self.recv(max_bytes)
        except OSError as exc:
            if exc.errno not in _EOF_ERRNOS:
                raise
            data = b""
        await trio.lowlevel.checkpoint()
        return data

    def peer_closed(self) -> bool | None:
        """Peek without consuming: True if the peer closed, False if data waits, None if nothing yet."""
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return None
        except OSError:
            return True
        return not data

    def send_nowait(self, data: bytes) -> memoryview | None:
        """Send what the kernel takes now; the unsent rest, or None when all of it went."""
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise PeerGone(str(exc)) from exc
        return memoryview(data)[sent:] if sent < len(data) else None

    async def send_rest(self, view: memoryview, stall_seconds: float) -> None:
        """Finish a send the kernel could not take at once; ``SendTimeout`` if the client
        accepts nothing for ``stall_seconds``."""
        sock = self.sock
        try:
            while view:
                with trio.move_on_after(stall_seconds) as scope:
                    await trio.lowlevel.wait_writable(sock)
                if scope.cancelled_caught:
                    raise SendTimeout(f"client read nothing for {stall_seconds:g}s")
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    pass
        except OSError as exc:
            raise PeerGone(str(exc)) from exc

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()


def peer_address(sock: socket.socket) -> str:
    """``host:port`` of the peer, for logs ("?" once it is gone)."""
    try:
        peer = sock.getpeername()
    except OSError:
        return "?"
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
