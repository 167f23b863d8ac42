"""A cap on the frames of one incoming WebSocket message, enforced on the client's bytes before
trio-websocket (wsproto) parses them. Sans-IO: ``FragmentLimit.feed`` takes bytes and says
which of them may pass.

Why here and not in the library: a message's size is counted from its payload, so zero-length
continuation frames never reach ``websocket_max_message_bytes``, and the library does not yield
between the frames of an unfinished message. A client sending 6-byte empty fragments costs the
server ~8 us each in wsproto and grows the message's list of parts without bound. Reading the
frame headers (RFC 6455 section 5.2) costs a fraction of that, so we count frames here and, past
the limit, cut the client's bytes at the start of the offending frame and put a close frame
(1009) in its place: the library then runs its ordinary close handshake, so the client gets a
1009 with our reason and the handler a ``WebSocketClosed(1009)``.
"""

from __future__ import annotations

import struct

import trio

from ..http.upgrade import UpgradedStream

MESSAGE_TOO_BIG = 1009
_CONTINUATION = 0x0
_FIRST_CONTROL_OPCODE = 0x8


def client_close_frame(code: int, reason: str) -> bytes:
    """A close frame as a client sends it (masked; a zero key leaves the payload as it is)."""
    payload = struct.pack("!H", code) + reason.encode()[:123]
    return bytes([0x80 | 0x8, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def _header_size(second_byte: int) -> int:
    length7 = second_byte & 0x7F
    extended = 2 if length7 == 126 else 8 if length7 == 127 else 0
    return 2 + extended + (4 if second_byte & 0x80 else 0)


def _payload_size(data: bytes, start: int) -> int:
    """The payload length of the frame whose (complete) header begins at ``start``."""
    length7 = data[start + 1] & 0x7F
    if length7 == 126:
        return int.from_bytes(data[start + 2 : start + 4], "big")
    if length7 == 127:
        return int.from_bytes(data[start + 2 : start + 10], "big")
    return length7


class FragmentLimit:
    """Counts the data frames of the message in progress. ``feed`` returns the bytes that may
    reach the parser now: a frame header split across reads is held back until it is whole,
    so a cut always falls on a frame boundary. Once a message has more than ``max_fragments``
    frames, ``exceeded`` is set and nothing more passes."""

    __slots__ = ("_fragments", "_held", "_payload_left", "exceeded", "max_fragments")

    def __init__(self, max_fragments: int) -> None:
        self.max_fragments = max_fragments
        self.exceeded = False
        self._fragments = 0
        self._payload_left = 0  # bytes of the current frame's payload still to come
        self._held = b""  # the start of a frame header that has not fully arrived

    def feed(self, data: bytes) -> bytes:
        if self.exceeded:
            return b""
        if self._held:
            data, self._held = self._held + data, b""
        size = len(data)
        position = min(self._payload_left, size)
        self._payload_left -= position
        while position < size:
            start = position
            header_size = _header_size(data[start + 1]) if size - start >= 2 else 2
            if size - start < header_size:
                self._held = data[start:]
                return data[:start]
            if not self._count(data[start]):
                self.exceeded = True
                return data[:start]
            position = start + header_size + _payload_size(data, start)
            if position > size:
                self._payload_left = position - size
                position = size
        return data

    def _count(self, first_byte: int) -> bool:
        """Track the frame whose first byte this is; False if it is one frame too many."""
        opcode = first_byte & 0x0F
        if opcode >= _FIRST_CONTROL_OPCODE:  # pings and closes may come between fragments
            return True
        self._fragments = self._fragments + 1 if opcode == _CONTINUATION else 1
        if self._fragments > self.max_fragments:
            return False
        if first_byte & 0x80:  # FIN: the message is complete
            self._fragments = 0
        return True


class FragmentLimitedStream(trio.abc.Stream):
    """An upgraded connection as trio-websocket reads it: the request head untouched, then the
    client's frames through a ``FragmentLimit``; past the limit, a close frame (1009) in place
    of the rest, then end of input."""

    __slots__ = ("_ended", "_head_left", "_limit", "_stream")  # one per open session

    def __init__(self, stream: UpgradedStream, max_fragments: int) -> None:
        self._stream = stream
        self._limit = FragmentLimit(max_fragments)
        self._head_left = stream.head_size
        self._ended = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while not self._ended:
            data = await self._stream.receive_some(max_bytes)
            if not data:
                return data
            head = b""
            if self._head_left:
                head, data = data[: self._head_left], data[self._head_left :]
                self._head_left -= len(head)
            passed = head + self._limit.feed(data)
            if self._limit.exceeded:
                self._ended = True
                reason = f"a message of more than {self._limit.max_fragments} frames"
                return passed + client_close_frame(MESSAGE_TOO_BIG, reason)
            if passed:
                return passed
        await trio.lowlevel.checkpoint()
        return b""

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()
