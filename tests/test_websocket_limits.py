"""WebSocket limits against hostile clients: the frame count of one message (sans-IO, then
through a real socket), and a flood of fragments from another process while an unrelated
request must still be answered."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import Running, serve
from tests.test_websockets import handshake
from trio_router import App, Request, WebSocket
from trio_router.websocket.fragments import FragmentLimit

MASK = b"\x01\x02\x03\x04"


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A client frame (masked), with the payload length in the shortest encoding."""
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        length = bytes([0x80 | 127]) + struct.pack("!Q", size)
    masked = bytes(byte ^ MASK[i % 4] for i, byte in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + length + MASK + masked


def fragmented(parts: int, size: int = 0) -> list[bytes]:
    """One text message in ``parts`` frames of ``size`` bytes each."""
    frames = [frame(0x1 if i == 0 else 0x0, b"x" * size, fin=i == parts - 1) for i in range(parts)]
    return frames


# A message: its frame count and payload size per frame; a ping may come between fragments.
messages = st.lists(st.tuples(st.integers(1, 6), st.sampled_from([0, 3, 125, 126, 300, 70_000]), st.booleans()))


@settings(max_examples=60, deadline=None)
@given(messages, st.integers(1, 4), st.lists(st.integers(1, 80_000), max_size=30))
def test_the_limit_cuts_at_the_first_frame_too_many_whatever_the_reads(
    plan: list[tuple[int, int, bool]], limit: int, cuts: list[int]
) -> None:
    frames: list[bytes] = []
    first_excess: int | None = None  # index in frames
    for parts, size, ping in plan:
        message = fragmented(parts, size)
        if ping and parts > 1:
            message.insert(1, frame(0x9, b"ping"))
        if parts > limit and first_excess is None:
            data_frames = [i for i, f in enumerate(message) if f[0] & 0x0F != 0x9]
            first_excess = len(frames) + data_frames[limit]
        frames += message
    wire = b"".join(frames)
    expected = wire if first_excess is None else b"".join(frames[:first_excess])
    counter, passed, offset = FragmentLimit(limit), b"", 0
    for cut in [*sorted(set(cuts)), len(wire)]:
        if cut > offset:
            passed += counter.feed(wire[offset:cut])
            offset = cut
    assert passed == expected
    assert counter.exceeded is (first_excess is not None)


def limits_app(ended: list[int]) -> App:
    app = App()

    @app.route("GET", "/ws", websocket=True)
    def echo(ws: WebSocket) -> None:
        try:
            for message in ws:
                ws.send(message)
        finally:
            closed = ws.closed
            ended.append(closed.code if closed else 0)

    @app.route("GET", "/ping")
    def ping(request: Request) -> dict[str, bool]:
        return {"pong": True}

    return app


async def open_session(running: Running) -> trio.SocketStream:
    client = await running.connect()
    await client.send(handshake("/ws"))
    assert (await client.stream.receive_some(4096)).startswith(b"HTTP/1.1 101 ")
    return client.stream


async def read_close(stream: trio.SocketStream) -> tuple[int, bytes]:
    """The code and reason of the server's close frame (server frames are not masked)."""
    received = b""
    with trio.fail_after(5):
        while len(received) < 2 or len(received) < 2 + (received[1] & 0x7F):
            chunk = await stream.receive_some(4096)
            assert chunk, f"closed without a close frame after {received!r}"
            received += chunk
    assert received[0] == 0x88, received
    payload = received[2 : 2 + (received[1] & 0x7F)]
    return struct.unpack("!H", payload[:2])[0], payload[2:]


async def test_a_message_in_too_many_frames_is_closed_with_1009() -> None:
    ended: list[int] = []
    async with serve(limits_app(ended), websocket_max_fragments=50, websocket_max_message_bytes=100) as running:
        stream = await open_session(running)
        await stream.send_all(b"".join(fragmented(50)))  # at the limit: a message like any other
        reply = await stream.receive_some(4096)
        assert reply == b"\x81\x00"  # the empty message echoed
        await stream.send_all(b"".join(fragmented(51)))  # one empty fragment more
        code, reason = await read_close(stream)
        assert (code, reason) == (1009, b"a message of more than 50 frames")
        with trio.fail_after(5):
            while not ended:  # noqa: ASYNC110
                await trio.sleep(0.01)
        assert ended == [1009]  # the handler was told why
        stream = await open_session(running)
        await stream.send_all(b"".join(fragmented(3, 40)[:-1]))  # an unfinished message of 80 bytes
        await stream.send_all(frame(0x0, b"x" * 30, fin=False))  # ... of 110 bytes: over the byte limit
        assert (await read_close(stream))[0] == 1009
        assert (await (await running.connect()).request("GET", "/ping")).status == 200


FLOODER = textwrap.dedent(
    """
    import socket, sys, time
    port, key = int(sys.argv[1]), sys.argv[2]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(("GET /ws HTTP/1.1\\r\\nhost: t\\r\\nupgrade: websocket\\r\\nconnection: Upgrade\\r\\n"
                  "sec-websocket-version: 13\\r\\nsec-websocket-key: " + key + "\\r\\n\\r\\n").encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    sock.sendall(b"\\x01\\x80\\0\\0\\0\\0")  # the first frame of a text message, then empty fragments
    batch = b"\\x00\\x80\\0\\0\\0\\0" * 10_000
    print("flooding", flush=True)
    stop = time.monotonic() + float(sys.argv[3])
    while time.monotonic() < stop:
        sock.sendall(batch)
    """
)


async def test_a_fragment_flood_does_not_hold_up_other_requests() -> None:
    """The flood comes from another process (a client in this event loop could not outrun the
    server). Even with the frame limit out of the way, every read is a checkpoint, so the GET is
    answered while the flood goes on; before, it waited for the flood to end."""
    from tests.test_websockets import KEY

    async with serve(limits_app([]), websocket_max_fragments=10**9) as running:
        flooder = await trio.lowlevel.open_process(
            [sys.executable, "-c", FLOODER, str(running.port), KEY, "8"], stdout=subprocess.PIPE
        )
        try:
            assert flooder.stdout is not None
            with trio.fail_after(10):
                said = b""
                while not said.endswith(b"\n"):  # a pipe read may return the line in pieces
                    said += await flooder.stdout.receive_some(100)
                assert said == b"flooding\n"
            await trio.sleep(0.3)  # the server is deep in the flood by now
            client = await running.connect()
            with trio.fail_after(6):
                reply = await client.request("GET", "/ping")
            assert reply.status == 200
            assert flooder.poll() is None  # answered while the flood was still coming
        finally:
            flooder.kill()
            await flooder.wait()
