"""Small apps the server tests drive. Each handler records what the test needs to see."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import trio
import trio.lowlevel

from trio_router import App, Request, Response


@dataclass
class Probe:
    """What handlers observed, for assertions."""

    tasks: list[object] = field(default_factory=list)
    started: trio.Event = field(default_factory=trio.Event)
    release: trio.Event = field(default_factory=trio.Event)
    finally_ran: list[str] = field(default_factory=list)
    finished: trio.Event = field(default_factory=trio.Event)
    cancelled: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


def build_app(probe: Probe) -> App:
    app = App()

    @app.route("GET", "/hello")
    def hello(request: Request) -> dict[str, str]:
        probe.tasks.append(trio.lowlevel.current_task())
        return {"hello": "world"}

    @app.route("POST", "/echo")
    async def echo(request: Request) -> Response:
        body = await request.receive()
        probe.bodies.append(body)
        return Response(body, headers=[("content-type", "application/octet-stream")])

    @app.route("POST", "/ignore-body")
    async def ignore_body(request: Request) -> str:
        return "not reading it"

    @app.route("GET", "/sleep")
    async def sleep(request: Request) -> str:
        probe.started.set()
        try:
            await trio.sleep(float(request.query_string.decode() or "3600"))
            return "slept"
        except trio.Cancelled:
            probe.cancelled.append("sleep")
            raise
        finally:
            probe.finally_ran.append("sleep")
            probe.finished.set()

    @app.route("GET", "/wait")
    async def wait(request: Request) -> str:
        probe.started.set()
        await probe.release.wait()
        return "released"

    @app.route("GET", "/short", timeout=0.5)
    async def short(request: Request) -> str:
        await trio.sleep(2)
        return "too late"

    @app.route("GET", "/long", timeout=120)
    async def long(request: Request) -> str:
        await trio.sleep(60)
        return "done in a minute"

    @app.route("GET", "/swallow")
    async def swallow(request: Request) -> str:
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            probe.cancelled.append("swallow")
        return "pretends nothing happened"

    @app.route("GET", "/spin")
    def spin(request: Request) -> str:
        end = time.monotonic() + float(request.query_string.decode())
        while time.monotonic() < end:  # CPU-bound: never yields to trio
            pass
        return "spun"

    @app.route("GET", "/boom")
    def boom(request: Request) -> str:
        raise RuntimeError("secret internals")

    @app.route("GET", "/bad-header")
    def bad_header(request: Request) -> Response:
        return Response(b"x", headers=[("x-evil", "a\r\nb")])

    @app.route("GET", "/stream")
    async def stream(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for part in (b"one,", b"two,", b"three"):
                yield part
                await trio.lowlevel.checkpoint()

        return Response(stream=chunks(), headers=[("content-type", "text/plain")])

    @app.route("GET", "/endless")
    async def endless(request: Request) -> Response:
        async def ticks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"tick\n"
                    await trio.sleep(1)
            finally:
                probe.finally_ran.append("endless")
                probe.finished.set()

        return Response(stream=ticks())

    @app.route("GET", "/things/{kind}/{name}.{ext}")
    def thing(request: Request) -> dict[str, str]:
        return request.path_params

    @app.route("GET", "/things/{kind}/special")
    def special(request: Request) -> dict[str, str]:
        return {"special": request.path_params["kind"]}

    @app.route("GET", "/big")
    def big(request: Request) -> bytes:
        return b"x" * int(request.query_string.decode())

    @app.route("GET", "/empty")
    def empty(request: Request) -> None:
        return None

    return app
