"""Relaying a backend's event stream to the client event by event, and deciding how it ended.

Once the first byte of a stream has gone to the client nothing can be retried, so each way a
backend can fail a stream ends the client's stream with an error event in OpenAI's shape (its
SDKs raise ``APIError`` with the message), counts against the backend's breaker, and reaches
the usage record as the stream's outcome (``StreamOutcome.code``):

| the backend                                         | code                 |
|-----------------------------------------------------|----------------------|
| sends no event for ``stream_idle_timeout`` s        | ``upstream_stalled`` |
| sends a line or event over ``max_event_bytes``      | ``upstream_oversized`` |
| breaks the connection or the HTTP framing           | ``upstream_closed``  |
| ends cleanly without ``finish_reason`` or ``[DONE]`` | ``upstream_truncated`` |

Our SSE keep-alive comments keep the client's connection alive meanwhile; they must not hide a
stalled backend, hence the idle limit here, counted between events: a backend that sends only
keep-alive comments (a trio-router one does) is stalled too. Messages name the backend, never
its address.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import trio

from trio_router import Event, EventParser, EventTooLarge, ResponseTooLarge, StreamError

from .backends import Backend, Registry

# A finished choice carries a string finish_reason; every chunk before it carries null.
_FINISHED = re.compile(r'"finish_reason"\s*:\s*"')


def relay(upstream: Any, registry: Registry, backend: Backend, model: str, sent: float) -> Iterator[Event]:
    """The upstream's events, one by one as they arrive; closing this closes the upstream.
    The backend's outstanding count, taken when the attempt began, is given back here."""
    config = registry.config
    parser = EventParser(config.max_event_bytes)
    chunks = 0
    done = finished = False
    idle = config.stream_idle_timeout
    upstream.deadline = trio.current_time() + idle
    try:
        try:
            for line in upstream.iter_lines(config.max_event_bytes):
                event = parser.line(line)
                if event is None:
                    continue
                upstream.deadline = trio.current_time() + idle
                if event.data == "[DONE]":
                    done = True
                else:
                    chunks += 1
                    finished = finished or _FINISHED.search(event.data) is not None
                yield event
        except httpx.ReadTimeout:
            raise _broken(
                registry, backend, model, sent, "upstream_stalled",
                f"backend {backend.name!r} sent no event for {idle:g} s after {_n(chunks)}",
            ) from None  # fmt: skip
        except (ResponseTooLarge, EventTooLarge):
            raise _broken(
                registry, backend, model, sent, "upstream_oversized",
                f"backend {backend.name!r} sent an event over {config.max_event_bytes} bytes after {_n(chunks)}",
            ) from None  # fmt: skip
        except httpx.HTTPError:
            raise _broken(
                registry, backend, model, sent, "upstream_closed",
                f"backend {backend.name!r} closed the stream after {_n(chunks)}",
            ) from None  # fmt: skip
        if not (done or finished):
            raise _broken(
                registry, backend, model, sent, "upstream_truncated",
                f"backend {backend.name!r} ended the stream after {_n(chunks)} without finishing the answer",
            )  # fmt: skip
    finally:
        backend.outstanding -= 1
        upstream.close()


def _broken(registry: Registry, backend: Backend, model: str, sent: float, code: str, detail: str) -> StreamError:
    now = trio.current_time()
    registry.record_broken_stream(backend, model, now - sent, now)
    return StreamError(detail, code=code)


def _n(chunks: int) -> str:
    return f"{chunks} chunk" if chunks == 1 else f"{chunks} chunks"
