"""Streaming server-sent events from a handler's iterator.

A handler returns a sync generator (run step by step in a pooled greenlet, so it may block on the
bridge between events) or an async generator, of ``Event``s or strings. A producer task pulls
from it into a bounded channel; the connection pulls encoded events out and sends each as one
chunk. So a slow client back-pressures the generator (at most ``sse_buffer_events`` wait), an idle
generator gets keep-alive comments, and at the stream's deadline the client receives a terminal
``event: error`` and the end of the response, never half an event.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

import trio

from ..http.request import Request
from ..http.response import Response
from ..runtime.current import current_request
from .sse import KEEPALIVE, Event, encode, terminal

log = logging.getLogger("trio_router.streaming")

Source = Iterable[Event | str] | AsyncIterable[Event | str]
_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]


class EventStream:
    """Return ``EventStream(generator)`` from any handler to stream its items as server-sent
    events; a spec operation whose response is ``text/event-stream`` may return the generator
    itself. ``keepalive`` overrides ``sse_keepalive_interval`` (seconds; None: the setting)."""

    def __init__(self, source: Source, *, keepalive: float | None = None, status: int = 200) -> None:
        self.source = source
        self.keepalive = keepalive
        self.status = status


def is_event_source(value: object) -> bool:
    """A generator or iterator a handler returned as a stream (not a body value)."""
    return (
        inspect.isgenerator(value)
        or inspect.isasyncgen(value)
        or (
            (hasattr(value, "__next__") or hasattr(value, "__anext__"))
            and not isinstance(value, str | bytes | bytearray | dict | list)
        )
    )


def event_stream_response(stream: EventStream, request: Request, *, grace: float) -> Response:
    """The response streaming ``stream``: severed at the request's deadline as it stands now, with
    ``grace`` seconds more for the connection to send the terminal event."""
    settings = request.settings
    keepalive = stream.keepalive if stream.keepalive is not None else settings.sse_keepalive_interval
    pump = _Pump(stream.source, request, keepalive, settings.sse_buffer_events, request.deadline)
    request.extend_deadline(grace)
    return Response(status=stream.status, headers=_HEADERS, stream=pump)


class _Pump:
    """The async iterator of encoded chunks the connection sends (and closes, always)."""

    def __init__(self, source: Source, request: Request, keepalive: float, buffer: int, sever_at: float) -> None:
        self._source = source
        self._request = request
        self._keepalive = keepalive
        self._sever_at = sever_at
        self._send, self._receive = trio.open_memory_channel[Any](buffer)
        self._producer_scope = trio.CancelScope()
        self._producer_done = trio.Event()
        self._started = False
        self._finished = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        if not self._started:
            self._started = True
            self._request.spawn(self._produce)
        with trio.move_on_at(min(trio.current_time() + self._keepalive, self._sever_at)) as waiting:
            try:
                item = await self._receive.receive()
            except trio.EndOfChannel:
                self._finished = True
                raise StopAsyncIteration from None
        if waiting.cancelled_caught:
            if trio.current_time() < self._sever_at:
                return KEEPALIVE
            self._finished = True
            await self.aclose()
            return terminal("deadline", detail="the stream reached its deadline")
        if isinstance(item, _Failure):
            self._finished = True
            return terminal("internal", detail="the event source failed; the error is in the server log")
        try:
            return encode(item)
        except (TypeError, ValueError) as exc:  # an item that cannot be an event: end cleanly, say why
            log.error("stream of %s (request id %s): %s", self._request.operation, self._request.id, exc)
            self._finished = True
            await self.aclose()
            return terminal("internal", detail="the event source produced an invalid event")

    async def aclose(self) -> None:
        """Stop the producer and wait until the generator's ``finally`` has run."""
        self._producer_scope.cancel()
        if self._started:
            await self._producer_done.wait()
        else:
            await _close_unstarted(self._source)

    async def _produce(self) -> None:
        current_request.set(self._request)  # this task's own context: bridge calls see the request
        try:
            with self._producer_scope:
                async with self._send:
                    try:
                        if isinstance(self._source, AsyncIterable):
                            await self._pump_async(self._source)
                        else:
                            await self._pump_sync(iter(self._source))
                    except Exception:
                        log.exception(
                            "event source of %s failed (request id %s)", self._request.operation, self._request.id
                        )
                        await self._send.send(_Failure())
        finally:
            self._producer_done.set()

    async def _pump_async(self, source: AsyncIterable[Event | str]) -> None:
        iterator = aiter(source)
        try:
            async for item in iterator:
                await self._send.send(item)
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None:
                with trio.CancelScope(
                    shield=True, deadline=trio.current_time() + self._request.settings.linger_timeout
                ):
                    await closer()

    async def _pump_sync(self, iterator: Iterator[Event | str]) -> None:
        pool = self._request.runtime.pool
        try:
            while True:
                item = await pool.run(_next_or_done, iterator, _nothing)
                if item is _DONE:
                    return
                await self._send.send(item)
        finally:
            closer = getattr(iterator, "close", None)
            if closer is not None:
                # The generator's finally may use the bridge: give it a bounded while, even when cancelled.
                with trio.CancelScope(
                    shield=True, deadline=trio.current_time() + self._request.settings.linger_timeout
                ):
                    await pool.run(lambda _: closer(), None, _nothing)


class _Failure:
    """Sent down the channel when the source raised: the consumer ends the stream with an error."""


_DONE: Any = object()


def _next_or_done(iterator: Iterator[Any]) -> Any:
    return next(iterator, _DONE)


def _nothing() -> None:
    pass


async def _close_unstarted(source: Source) -> None:
    closer = getattr(source, "aclose", None) or getattr(source, "close", None)
    if closer is not None:
        result = closer()
        if inspect.isawaitable(result):
            await result
