"""The anchor for stress/suspended_requests.py: a bare trio + h11 loop where each request runs
in a greenlet that switches back to the loop to sleep, as trio-router's bridge does, with none
of the framework around it.

    python stress/suspended_anchor.py PORT
"""

from __future__ import annotations

import sys

import greenlet
import h11
import trio


def handler(seconds: float) -> bytes:
    # Ask the loop (the parent greenlet) to sleep for us, then answer.
    greenlet.getcurrent().parent.switch(seconds)
    return b'{"rested":true}'


async def serve(stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if type(event) is h11.Request:
                seconds = float(event.target.partition(b"?")[2] or b"0")
                worker = greenlet.greenlet(handler)
                request = worker.switch(seconds)
                while not worker.dead:  # the handler asked for a sleep
                    await trio.sleep(request)
                    body = worker.switch()
                    request = body
                headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
                await stream.send_all(
                    conn.send(h11.Response(status_code=200, headers=headers))
                    + conn.send(h11.Data(data=body))
                    + conn.send(h11.EndOfMessage())
                )
            elif type(event) is h11.EndOfMessage:
                conn.start_next_cycle()
            else:
                return
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        pass


async def main(port: int) -> None:
    await trio.serve_tcp(serve, port, host="127.0.0.1", backlog=4096)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]))
