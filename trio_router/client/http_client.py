"""An HTTP client for synchronous handlers: blocking-looking calls over one shared
``httpx.AsyncClient`` per server, so upstream connections are pooled across requests.

    from trio_router import http_client

    def get_quote(request):
        reply = http_client.get("http://quotes.internal/today", timeout=2)
        return reply.json()

Each call suspends only the handler's greenlet; the request's deadline, a client
disconnect or a shutdown cancels the upstream call like any other bridge call.
"""

from __future__ import annotations

import json as _json
from collections.abc import AsyncIterator, Iterator, Mapping
from functools import partialmethod
from typing import Any

import httpx
import trio

from ..runtime.bridge import await_
from ..runtime.current import current_request
from .upstream import ResponseTooLarge, UpstreamPool, UpstreamResponse

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)

_shared: trio.lowlevel.RunVar[httpx.AsyncClient | None] = trio.lowlevel.RunVar("trio_router_http_client", None)
_pool: trio.lowlevel.RunVar[UpstreamPool | None] = trio.lowlevel.RunVar("trio_router_upstream_pool", None)


def shared_async_client() -> httpx.AsyncClient:
    """The run's shared ``httpx.AsyncClient`` (for async handlers too), created on first use."""
    client = _shared.get()
    if client is None:
        client = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=DEFAULT_LIMITS)
        _shared.set(client)
    return client


async def close_shared_client() -> None:
    """Close the shared clients' pooled connections; the server calls this when it stops."""
    client = _shared.get()
    if client is not None:
        _shared.set(None)
        await client.aclose()
    pool = _pool.get()
    if pool is not None:
        _pool.set(None)
        await pool.aclose()


class StreamingResponse:
    """An upstream response whose body is read as it arrives, synchronously (each read suspends
    only the handler). ``close()`` releases the connection; the body iterators close it at the end."""

    def __init__(self, response: httpx.Response | UpstreamResponse) -> None:
        self.response = response
        self.status_code = response.status_code
        # The trio time by which the body iterators' next item must come, else httpx.ReadTimeout:
        # a relay that counts silence between its events (a keep-alive comment resets a read
        # timeout, not this) moves it after each event.
        self.deadline: float | None = None

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    def header(self, name: str) -> str | None:
        """One header's value (the first, if repeated), without building ``headers``: a proxy
        that needs only the content type saves the mapping's cost."""
        if isinstance(self.response, UpstreamResponse):
            raw = self.response.header(name.lower().encode("latin-1"))
            return None if raw is None else raw.decode("latin-1")
        value: str | None = self.response.headers.get(name)
        return value

    def read(self, max_bytes: int | None = None) -> bytes:
        """The whole body; one over ``max_bytes`` raises ``ResponseTooLarge`` (and is not kept)."""
        if isinstance(self.response, UpstreamResponse):
            return await_(self.response.aread(max_bytes))
        return await_(_read_bounded(self.response, max_bytes))

    def read_prefix(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body, the rest left unread (the connection is closed):
        quoting an upstream's error page costs the same whatever its size."""
        if isinstance(self.response, UpstreamResponse):
            return await_(self.response.aread_prefix(limit))
        return await_(_read_prefix(self.response, limit))

    def iter_bytes(self) -> Iterator[bytes]:
        return self._iterate(self.response.aiter_bytes())

    def iter_lines(self, max_line: int | None = None) -> Iterator[str]:
        """The body's lines as they arrive; one longer than ``max_line`` raises ``ResponseTooLarge``."""
        if isinstance(self.response, UpstreamResponse):
            return self._iterate(self.response.aiter_lines(max_line))
        return self._iterate(_bounded_lines(self.response.aiter_lines(), max_line))

    def close(self) -> None:
        """Release the connection, even while the handler is being cancelled (bounded: 5 s)."""
        if isinstance(self.response, UpstreamResponse):
            self.response.close()  # synchronous: no trip through the bridge
        else:
            await_(_close_shielded(self.response))

    def _iterate(self, chunks: AsyncIterator[Any]) -> Iterator[Any]:
        try:
            while True:
                try:
                    if self.deadline is None:
                        yield await_(chunks.__anext__())
                    else:
                        yield await_(_next_by(chunks, self.deadline))
                except StopAsyncIteration:
                    return
        finally:
            self.close()


async def _next_by(chunks: AsyncIterator[Any], deadline: float) -> Any:
    try:
        with trio.fail_at(deadline):
            return await chunks.__anext__()
    except trio.TooSlowError:
        raise httpx.ReadTimeout("nothing arrived by the stream's deadline") from None


async def _read_bounded(response: httpx.Response, max_bytes: int | None) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise ResponseTooLarge(f"the upstream's body is over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_prefix(response: httpx.Response, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


async def _bounded_lines(lines: AsyncIterator[str], max_line: int | None) -> AsyncIterator[str]:
    """httpx's lines, bounded after the fact (httpx buffers a line whole before yielding it)."""
    async for line in lines:
        if max_line is not None and len(line) > max_line:
            raise ResponseTooLarge(f"the upstream sent a line over {max_line} characters")
        yield line


async def _close_shielded(response: httpx.Response | UpstreamResponse) -> None:
    with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
        await response.aclose()


class HandlerHTTPClient:
    """``httpx``'s request API, synchronous, for handlers running in greenlets."""

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request; inside a handler it carries the request's ``traceparent`` and request id."""
        kwargs["headers"] = _trace_headers(kwargs.pop("headers", None))
        return await_(shared_async_client().request(method, url, **kwargs))

    def stream(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        head_timeout: float | None = None,
    ) -> StreamingResponse:
        """Send a request and return once the response head is in; read the body from the result
        (``iter_lines``, ``iter_bytes``, ``read``) and ``close()`` it, or let an iterator finish.
        ``timeout``'s read part bounds each silence while reading the body; ``head_timeout``
        (default: the same) bounds the wait for the head after the request is sent, the time
        to first byte (``httpx.ReadTimeout`` either way).

        Plain ``http://`` calls go through a lean client over pooled connections (a proxy's
        hot path: see ``upstream.py``), others through httpx; errors are httpx's either way."""
        if not url.startswith("http://"):
            client = shared_async_client()
            traced = _trace_headers(headers)
            built = client.build_request(method, url, json=json, content=content, headers=traced, timeout=timeout)
            return StreamingResponse(await_(_send_httpx(client, built, head_timeout)))
        body = content if content is not None else b""
        if json is not None:
            body = _json.dumps(json, separators=(",", ":")).encode()
        connect, read = _timeouts(timeout)
        pending = upstream_pool().send(
            method,
            url,
            _trace_headers(headers, json is not None),
            body,
            connect_timeout=connect,
            read_timeout=read if head_timeout is None else head_timeout,
            body_timeout=read,
        )
        return StreamingResponse(await_(pending))

    get = partialmethod(request, "GET")
    post = partialmethod(request, "POST")
    put = partialmethod(request, "PUT")
    patch = partialmethod(request, "PATCH")
    delete = partialmethod(request, "DELETE")
    head = partialmethod(request, "HEAD")


async def _send_httpx(client: httpx.AsyncClient, built: httpx.Request, head_timeout: float | None) -> httpx.Response:
    if head_timeout is None:
        return await client.send(built, stream=True)
    with trio.move_on_after(head_timeout):
        return await client.send(built, stream=True)
    raise httpx.ReadTimeout(f"no response head within {head_timeout:g}s", request=built)


def _timeouts(timeout: float | httpx.Timeout | None) -> tuple[float, float]:
    if timeout is None:
        return DEFAULT_TIMEOUT.connect or 5.0, DEFAULT_TIMEOUT.read or 10.0
    if isinstance(timeout, httpx.Timeout):
        return timeout.connect or 5.0, timeout.read or 10.0
    return float(timeout), float(timeout)


def upstream_pool() -> UpstreamPool:
    """The run's pool of lean upstream connections (``http_client.stream`` over http://)."""
    pool = _pool.get()
    if pool is None:
        pool = UpstreamPool()
        _pool.set(pool)
    return pool


def _trace_headers(headers: Any, json_body: bool = False) -> list[tuple[str, str]]:
    """The caller's headers (a mapping, ``httpx.Headers`` or pairs) as a plain list, plus the
    request's ``traceparent`` and request id (inside a handler) and a JSON content type where
    the caller set none. A list, not ``httpx.Headers``: building that and its setdefaults cost
    ~5% of a gateway request on the lean path."""
    if headers is None:
        pairs: Any = ()
    elif isinstance(headers, httpx.Headers):
        pairs = headers.multi_items()
    elif isinstance(headers, Mapping):
        pairs = headers.items()
    else:
        pairs = headers
    listed = [(name.lower(), value) for name, value in pairs]
    present = {name for name, _ in listed}
    request = current_request.get()
    if request is not None:
        if "traceparent" not in present:
            listed.append(("traceparent", request.trace.outgoing()))
        if "x-request-id" not in present:
            listed.append(("x-request-id", request.id))
    if json_body and "content-type" not in present:
        listed.append(("content-type", "application/json"))
    return listed


http_client = HandlerHTTPClient()
