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

from functools import partialmethod
from typing import Any

import httpx
import trio

from .bridge import await_
from .current import current_request

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64)

_shared: trio.lowlevel.RunVar[httpx.AsyncClient | None] = trio.lowlevel.RunVar("trio_router_http_client", None)


def shared_async_client() -> httpx.AsyncClient:
    """The run's shared ``httpx.AsyncClient`` (for async handlers too), created on first use."""
    client = _shared.get()
    if client is None:
        client = httpx.AsyncClient(timeout=DEFAULT_TIMEOUT, limits=DEFAULT_LIMITS)
        _shared.set(client)
    return client


async def close_shared_client() -> None:
    """Close the shared client's pooled connections; the server calls this when it stops."""
    client = _shared.get()
    if client is not None:
        _shared.set(None)
        await client.aclose()


class HandlerHTTPClient:
    """``httpx``'s request API, synchronous, for handlers running in greenlets."""

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request; inside a handler it carries the request's ``traceparent`` and request id."""
        request = current_request.get()
        if request is not None:
            headers = httpx.Headers(kwargs.pop("headers", None))
            headers.setdefault("traceparent", request.trace.outgoing())
            headers.setdefault("x-request-id", request.id)
            kwargs["headers"] = headers
        return await_(shared_async_client().request(method, url, **kwargs))

    get = partialmethod(request, "GET")
    post = partialmethod(request, "POST")
    put = partialmethod(request, "PUT")
    patch = partialmethod(request, "PATCH")
    delete = partialmethod(request, "DELETE")
    head = partialmethod(request, "HEAD")


http_client = HandlerHTTPClient()
