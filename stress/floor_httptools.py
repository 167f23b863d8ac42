"""The floor with a C parser: trio.serve_tcp + httptools (uvicorn's parser), no framework.

Same response bytes as stress/floor.py, serialised by hand (httptools only parses). Not a
server to use (no framing checks, no limits): a measurement of what replacing h11's parsing
and serialisation would buy.

    python stress/floor_httptools.py PORT
"""

from __future__ import annotations

import sys
import time
from email.utils import formatdate

import httptools
import trio

BODY = b'{"status":"ok"}'


class _Requests:
    """httptools' callbacks: count complete requests (keep-alive, possibly pipelined)."""

    def __init__(self) -> None:
        self.complete = 0

    def on_message_complete(self) -> None:
        self.complete += 1


async def serve(stream: trio.SocketStream) -> None:
    requests = _Requests()
    parser = httptools.HttpRequestParser(requests)
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            parser.feed_data(data)
            if requests.complete:
                head = (
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ndate: "
                    + formatdate(time.time(), usegmt=True).encode()
                    + b"\r\nserver: floor\r\ncontent-length: %d\r\n\r\n" % len(BODY)
                )
                await stream.send_all((head + BODY) * requests.complete)
                requests.complete = 0
    except (trio.BrokenResourceError, httptools.HttpParserError):
        pass


async def main(port: int) -> None:
    await trio.serve_tcp(serve, port, host="127.0.0.1")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
