"""Forwarding one request: try the planned backends in order, retry what failed before any
byte reached the client, relay streams event by event (through the framework's guardrails).

Connection errors, timeouts and 5xx answers are retried on the next candidate (or fallback
model), at least ``retry_delay`` after the previous attempt began. A 4xx is the client's
problem: it is passed through. Once a stream has started nothing is retried; an upstream that
dies mid-stream ends the client's stream with a terminal error event and counts as a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import trio

from trio_router import Event, EventParser, EventStream, HTTPError, Request, Response, http_client, sleep

from .backends import Backend, Registry


def forward(registry: Registry, request: Request, path: str, body: dict[str, Any]) -> Response | EventStream:
    model = body["model"]
    if not registry.knows(model) and not registry.config.fallbacks.get(model):
        raise HTTPError(404, f"the model {model!r} does not exist", close=False, code="model_not_found")
    config = registry.config
    timeout = httpx.Timeout(config.total_timeout, connect=config.connect_timeout)
    started = trio.current_time()
    upstream_seconds = 0.0
    attempts: list[dict[str, Any]] = []
    last_attempt = -float("inf")
    for backend, target_model in registry.plan(model, started):
        wait = last_attempt + config.retry_delay - trio.current_time()
        if attempts and wait > 0:
            sleep(wait)
        last_attempt = sent = trio.current_time()
        payload = body if target_model == model else {**body, "model": target_model}
        url = f"{backend.config.url}{path}"
        backend.outstanding += 1
        handed_over = False
        try:
            upstream = http_client.stream("POST", url, json=payload, timeout=timeout)
        except httpx.TransportError as exc:
            backend.outstanding -= 1
            _failed(registry, backend, target_model, attempts, sent, f"{type(exc).__name__}: {exc}".rstrip(": "))
            continue
        try:
            upstream_seconds += trio.current_time() - sent
            if upstream.status_code >= 500:
                detail = upstream.read()[:200].decode("utf-8", "replace")
                _failed(registry, backend, target_model, attempts, sent, f"HTTP {upstream.status_code}: {detail}")
                continue
            now = trio.current_time()
            registry.record(backend, target_model, True, now - sent, now)  # a 4xx is the client's fault
            attempts.append({"backend": backend.name, "model": target_model, "status": upstream.status_code})
            overhead_ms = (trio.current_time() - started - upstream_seconds) * 1000
            headers = [
                ("x-router-backend", backend.name),
                ("x-router-attempts", str(len(attempts))),
                ("x-router-overhead-ms", f"{overhead_ms:.3f}"),
            ]
            content_type = upstream.headers.get("content-type", "application/json")
            if upstream.status_code == 200 and content_type.startswith("text/event-stream"):
                handed_over = True
                return EventStream(_relay(upstream, registry, backend, target_model, sent), headers=headers)
            return Response(upstream.read(), upstream.status_code, [("content-type", content_type), *headers])
        finally:
            if not handed_over:
                backend.outstanding -= 1
                upstream.close()
    if not attempts:
        raise HTTPError(503, f"no healthy backend serves {model!r} now", close=False, code="no_backend_available")
    raise HTTPError(502, f"every backend failed for {model!r}", close=False, code="backends_failed", attempts=attempts)


def _failed(
    registry: Registry, backend: Backend, model: str, attempts: list[dict[str, Any]], sent: float, error: str
) -> None:
    now = trio.current_time()
    registry.record(backend, model, False, now - sent, now)
    attempts.append({"backend": backend.name, "error": error})


def _relay(upstream: Any, registry: Registry, backend: Backend, model: str, sent: float) -> Iterator[Event]:
    """The upstream's events, one by one as they arrive; closing this closes the upstream."""
    parser = EventParser()
    try:
        for line in upstream.iter_lines():
            event = parser.line(line)
            if event is not None:
                yield event
    except httpx.HTTPError:
        now = trio.current_time()
        registry.record_broken_stream(backend, model, now - sent, now)
        raise
    finally:
        backend.outstanding -= 1
        upstream.close()
