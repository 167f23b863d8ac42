"""The speed floor: a minimal trio + h11 keep-alive loop, no framework at all.

It answers every request with the same bytes trio-router sends for GET /health (same
headers, one coalesced send per response), so the two are compared like for like.

    python stress/floor.py PORT
"""

from __future__ import annotations

import sys
import time
from email.utils import formatdate

import h11
import trio

BODY = b'{"status":"ok"}'


async def serve(stream: trio.SocketStream) -> None:
    try:
        await _serve(stream)
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        pass  # wrk resets its connections when it stops


async def _serve(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            if not data:
                return
            continue
        if type(event) is h11.Request:
            headers = [
                (b"content-type", b"application/json"),
                (b"date", formatdate(time.time(), usegmt=True).encode()),
                (b"server", b"floor"),
                (b"content-length", b"%d" % len(BODY)),
            ]
            out = conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
            out += conn.send(h11.Data(data=BODY))
            out += conn.send(h11.EndOfMessage())
            await stream.send_all(out)
        elif type(event) is h11.EndOfMessage:
            if conn.our_state is not h11.DONE:
                continue
            if conn.their_state is not h11.DONE:
                continue
            conn.start_next_cycle()
        else:  # ConnectionClosed
            return
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()


async def main(port: int) -> None:
    await trio.serve_tcp(serve, port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
