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
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import DropConnection
from ..http.error_formats import openai_error
from ..http.request import Request
from ..http.response import Response
from ..runtime.current import current_request
from .guardrails.events import GuardedEvents
from .guardrails.service import of as guardrails_of
from .sse import KEEPALIVE, Event, encode, terminal

log = logging.getLogger("trio_router.streaming")

Source = Iterable[Event | str] | AsyncIterable[Event | str]
_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache"), ("x-accel-buffering", "no")]


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """How a stream ended, for ``EventStream(on_close=...)``: ``reason`` is ``complete`` (the
    source ended), ``deadline``, ``guardrail`` (severed), ``aborted`` (the source raised
    ``StreamError``: its ``code`` and ``detail`` are here), ``internal`` (the source failed
    otherwise) or ``disconnect`` (the client left or could not be written to); ``guardrails``
    counts the verdicts by action (redact, flag, truncate)."""

    reason: str
    guardrails: dict[str, int] = field(default_factory=dict)
    code: str | None = None
    detail: str | None = None


class StreamError(Exception):
    """Raise from an event source to end its stream early with an error the client can read:
    the last event carries ``detail`` and ``code`` in the operation's error format (OpenAI's
    ``{"error": {"message", "type", "code"}}``, which its SDKs raise as ``APIError``), where a
    failure of any other kind says only that the source failed. A relay uses it to say what
    its upstream did (``"backend 'b' stopped sending after 12 chunks"``)."""

    def __init__(self, detail: str, *, code: str = "stream_error") -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class EventStream:
    """Return ``EventStream(generator)`` from any handler to stream its items as server-sent
    events; a spec operation whose response is ``text/event-stream`` may return the generator
    itself. ``keepalive`` overrides ``sse_keepalive_interval`` (seconds; None: the setting);
    ``guardrails=False`` sends the events unchecked (the operation's ``x-guardrails`` otherwise);
    ``headers`` are added to the response's. ``on_close``, an async function of a
    ``StreamOutcome``, runs once after the stream ended however it ended (after the generator's
    ``finally``, shielded from cancellation for up to ``linger_timeout``): the place to settle
    what the stream cost, with the guardrails' verdicts known."""

    def __init__(
        self,
        source: Source,
        *,
        keepalive: float | None = None,
        status: int = 200,
        guardrails: bool = True,
        headers: Iterable[tuple[str, str]] = (),
        on_close: Callable[[StreamOutcome], Awaitable[None]] | None = None,
    ) -> None:
        self.source = source
        self.headers = list(headers)
        self.on_close = on_close
        self.keepalive = keepalive
        self.status = status
        self.guardrails = guardrails


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


def event_stream_response(
    stream: EventStream, request: Request, *, grace: float, guardrails: object = None
) -> Response:
    """The response streaming ``stream``: checked by the guardrail policy ``guardrails`` (an
    operation's x-guardrails) selects, severed at the request's deadline as it stands now, with
    ``grace`` seconds more for the connection to send the terminal event."""
    settings = request.settings
    keepalive = stream.keepalive if stream.keepalive is not None else settings.sse_keepalive_interval
    server_guardrails = guardrails_of(request) if stream.guardrails else None
    policy = server_guardrails.policy(guardrails) if server_guardrails is not None else None
    guard = GuardedEvents(policy, deadline=request.deadline) if policy is not None else None
    pump = _Pump(stream.source, request, keepalive, settings.sse_buffer_events, request.deadline, guard)
    pump.on_close = stream.on_close
    request.extend_deadline(grace)
    return Response(status=stream.status, headers=[*_HEADERS, *stream.headers], stream=pump)


_DEADLINE = ("deadline", "the stream reached its deadline")
_FAILED = ("internal", "the event source failed; the error is in the server log")
_INVALID = ("internal", "the event source produced an invalid event")
_TIMED_OUT: Any = object()
_DROP: Any = object()  # the source raised DropConnection: cut the connection
_ENDED: Any = object()
# An event whose text is longer is checked by the guardrails in a worker thread (the GIL is
# handed back to the event loop every few ms): a 64 KB event checked inline held it 160 ms.
_OFF_LOOP_CHARS = 16384


class _Pump:
    """The async iterator of encoded chunks the connection sends (and closes, always)."""

    def __init__(
        self,
        source: Source,
        request: Request,
        keepalive: float,
        buffer: int,
        sever_at: float,
        guard: GuardedEvents | None,
    ) -> None:
        self._source = source
        self._request = request
        self._keepalive = keepalive
        self._sever_at = sever_at
        self._guard = guard
        self._send, self._receive = trio.open_memory_channel[Any](buffer)
        self._producer_scope = trio.CancelScope()
        self._producer_done = trio.Event()
        self._started = False
        self._finished = False
        self._last_sent = trio.current_time()
        self._reason = "disconnect"  # until _end says otherwise
        self._abort: StreamError | None = None
        self.on_close: Callable[[StreamOutcome], Awaitable[None]] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        """The next bytes to send: events, a keep-alive, or the end of the stream. Never empty
        (an empty chunk would end the chunked body), so held-back events make it loop."""
        if not self._started:
            self._started = True
            self._request.spawn(self._produce)
        while not self._finished:
            item, now = await self._next_item()
            if item is _ENDED:
                return await self._end(self._guard.finish() if self._guard else [], None, None) or self._stop()
            if item is _TIMED_OUT:
                if now >= self._sever_at:
                    held = self._guard.flush(now) if self._guard else []
                    return await self._end(held, self._terminal(*_DEADLINE), "deadline")
                if self._guard is None or (due := self._guard.flush_due()) is None or now < due:
                    self._last_sent = now
                    return KEEPALIVE
                events = self._guard.flush(now)
            elif item is _DROP:
                await self.aclose()
                raise DropConnection
            elif isinstance(item, _Failure):
                held = self._guard.finish() if self._guard else []
                self._abort = error = item.error
                if error is None:
                    return await self._end(held, self._terminal(*_FAILED), "internal")
                return await self._end(held, self._terminal(error.code, error.detail), "aborted")
            elif self._guard is None:
                events = [item]
            elif _text_size(item) > _OFF_LOOP_CHARS:  # a long check must not stall every other request
                events = await trio.to_thread.run_sync(self._guard.process, item, now)
            else:
                events = self._guard.process(item, now)
            if self._guard is not None and self._guard.severed is not None:
                return await self._end(events, None, None)
            chunk = self._encode(events)
            if chunk is None:
                return await self._end([], self._terminal(*_INVALID), "internal")
            if chunk:
                self._last_sent = now
                return chunk
        return self._stop()

    async def _next_item(self) -> tuple[Any, float]:
        wake = min(self._last_sent + self._keepalive, self._sever_at)
        due = self._guard.flush_due() if self._guard is not None else None
        with trio.move_on_at(wake if due is None else min(wake, due)):
            try:
                return await self._receive.receive(), trio.current_time()
            except trio.EndOfChannel:
                return _ENDED, trio.current_time()
        return _TIMED_OUT, trio.current_time()

    async def _end(self, events: Sequence[Event | str], last: bytes | None, reason: str | None) -> bytes:
        """The stream's final bytes: ``events``, then the guardrails' terminal events if they
        severed it, else ``last`` (the server's own terminal event for ``reason``, or nothing)."""
        self._finished = True
        guard = self._guard
        chunk = self._encode(events) or b""
        if guard is not None:
            if guard.severed is not None:
                last, reason = b"".join(encode(event) for event in guard.terminal()), "guardrail"
            self._export()
            if guard.forced_flushes:
                self._request.stats.count("guardrail_forced_flushes", self._request.operation, by=guard.forced_flushes)
        if reason is not None:
            self._request.stats.count("stream_severs", self._request.operation, reason)
        self._reason = reason or "complete"
        await self.aclose()
        return chunk + (last or b"")

    def _terminal(self, reason: str, detail: str) -> bytes:
        """The server's own last event, in the operation's error format: OpenAI SDKs raise an
        APIError carrying an ``{"error": {...}}`` object; other clients get reason and detail."""
        if self._request.render_error is openai_error:
            return encode(Event({"error": {"message": detail, "type": "server_error", "code": reason}}))
        return terminal(reason, detail=detail)

    def _stop(self) -> bytes:
        raise StopAsyncIteration

    def _encode(self, events: Sequence[Event | str]) -> bytes | None:
        """The events' bytes (None if one cannot be an event), verdicts exported on the way."""
        if self._guard is not None:
            self._export()
        try:
            return b"".join(encode(event) for event in events)
        except (TypeError, ValueError) as exc:  # an item that cannot be an event: end cleanly, say why
            log.error("stream of %s (request id %s): %s", self._request.operation, self._request.id, exc)
            return None

    def _export(self) -> None:
        assert self._guard is not None
        verdicts = self._guard.take_verdicts()
        server_guardrails = guardrails_of(self._request)
        exporter = server_guardrails.verdicts if server_guardrails is not None else None
        if verdicts and exporter is not None:
            request = self._request
            exporter.export(verdicts, request_id=request.id, operation=request.operation, tenant=request.tenant)

    async def aclose(self) -> None:
        """Stop the producer and wait until the generator's ``finally`` has run."""
        self._producer_scope.cancel()
        if self._started:
            await self._producer_done.wait()
        else:
            await _close_unstarted(self._source)
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            counts = dict(self._guard.counts) if self._guard is not None else {}
            abort = self._abort if self._reason == "aborted" else None
            outcome = StreamOutcome(
                self._reason, counts, abort.code if abort else None, abort.detail if abort else None
            )
            with self._closing_scope():
                try:
                    await on_close(outcome)
                except Exception:
                    log.exception(
                        "on_close of the stream of %s failed (request id %s)", self._request.operation, self._request.id
                    )

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
                    except DropConnection:
                        await self._send.send(_DROP)
                    except StreamError as exc:
                        log.warning(
                            "stream of %s ended early (request id %s): %s",
                            self._request.operation,
                            self._request.id,
                            exc.detail,
                        )
                        await self._send.send(_Failure(exc))
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
                with self._closing_scope():
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
                with self._closing_scope():
                    await pool.run(lambda _: closer(), None, _nothing)

    def _closing_scope(self) -> trio.CancelScope:
        """The generator's finally may await (or use the bridge): a bounded while, even when cancelled."""
        return trio.CancelScope(shield=True, deadline=trio.current_time() + self._request.settings.linger_timeout)


class _Failure:
    """Sent down the channel when the source raised: the consumer ends the stream with an error
    (the source's own words if it raised ``StreamError``)."""

    __slots__ = ("error",)

    def __init__(self, error: StreamError | None = None) -> None:
        self.error = error


_DONE: Any = object()


def _next_or_done(iterator: Iterator[Any]) -> Any:
    return next(iterator, _DONE)


def _text_size(item: Event | str) -> int:
    data = item.data if isinstance(item, Event) else item
    return len(data) if isinstance(data, str) else 0


def _nothing() -> None:
    pass


async def _close_unstarted(source: Source) -> None:
    closer = getattr(source, "aclose", None) or getattr(source, "close", None)
    if closer is not None:
        result = closer()
        if inspect.isawaitable(result):
            await result
