"""Synchronous handlers exercising the greenlet runtime and the bridge."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field

import trio
import trio.lowlevel

import trio_router
from trio_router import App, HTTPError, Request, Response

current_user: contextvars.ContextVar[str] = contextvars.ContextVar("current_user", default="nobody")


def whoami() -> str:
    """Something a handler calls: it must see the handler's contextvars."""
    return current_user.get()


async def fails() -> None:
    await trio.lowlevel.checkpoint()
    raise ValueError("upstream said no")


def sync_helper_that_bridges() -> None:
    trio_router.sleep(0)


async def async_code_calling_sync_code() -> None:
    await trio.lowlevel.checkpoint()
    sync_helper_that_bridges()  # re-entrancy: sync code called from async code


@dataclass
class SyncProbe:
    tasks: list[object] = field(default_factory=list)
    greenlets: list[object] = field(default_factory=list)
    seen_users: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    was_cancelled: trio.Event = field(default_factory=trio.Event)
    finally_ran: list[str] = field(default_factory=list)
    finished: trio.Event = field(default_factory=trio.Event)
    started: trio.Event = field(default_factory=trio.Event)


def build_sync_app(probe: SyncProbe, upstream: str = "") -> App:
    app = App()

    @app.route("GET", "/where")
    def where(request: Request) -> dict[str, bool]:
        import greenlet

        probe.tasks.append(trio.lowlevel.current_task())
        probe.greenlets.append(greenlet.getcurrent())
        return {"in_handler": trio_router.in_handler()}

    @app.route("GET", "/nap")
    def nap(request: Request) -> str:
        probe.started.set()
        try:
            trio_router.sleep(float(request.query_string.decode() or "3600"))
            return "rested"
        except trio.Cancelled:
            probe.cancelled.append("nap")
            probe.was_cancelled.set()
            raise
        finally:
            probe.finally_ran.append("nap")
            probe.finished.set()

    @app.route("GET", "/stubborn")
    def stubborn(request: Request) -> str:
        try:
            trio_router.sleep(3600)
        except trio.Cancelled:
            probe.cancelled.append("stubborn")
        return "I ignored the cancellation"

    @app.route("GET", "/await-result")
    def await_result(request: Request) -> dict[str, object]:
        value = trio_router.await_(trio.to_thread.run_sync(lambda: 6 * 7))
        try:
            trio_router.await_(fails())
        except ValueError as exc:
            return {"value": value, "error": str(exc)}
        return {"value": value}

    @app.route("GET", "/reentrant")
    def reentrant(request: Request) -> str:
        try:
            trio_router.await_(async_code_calling_sync_code())
        except trio_router.BridgeError as exc:
            return str(exc)
        return "re-entrancy worked"

    @app.route("GET", "/context")
    def context(request: Request) -> dict[str, str]:
        before = current_user.get()
        if request.query_string:
            current_user.set(request.query_string.decode())
        trio_router.sleep(0)  # the value survives a suspension
        probe.seen_users.append(whoami())
        return {"before": before, "after": whoami()}

    @app.route("GET", "/crash")
    def crash(request: Request) -> str:
        trio_router.sleep(0)
        raise KeyError("internal detail")

    @app.route("POST", "/read")
    def read(request: Request) -> Response:
        if request.header("x-reject"):
            raise HTTPError(401, "not you", close=False)
        return Response(request.read()[::-1])

    @app.route("GET", "/headers")
    def headers(request: Request) -> dict[str, str | None]:
        return {name: request.header(name) for name in ("traceparent", "x-request-id")}

    @app.route("GET", "/proxy-headers")
    def proxy_headers(request: Request) -> dict[str, object]:
        upstream_saw = trio_router.http_client.get(upstream + "/headers").json()
        return {"upstream_saw": upstream_saw, "span_id": request.trace.span_id, "trace_id": request.trace.trace_id}

    @app.route("GET", "/proxy")
    def proxy(request: Request) -> Response:
        reply = trio_router.http_client.get(upstream + "/nap?" + request.query_string.decode())
        return Response(reply.content, status=reply.status_code)

    return app
