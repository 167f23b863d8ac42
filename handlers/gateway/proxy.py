"""Forwarding one request: try the planned backends in order, retry what failed before any
byte reached the client, relay streams event by event (through the framework's guardrails).

Connection errors, timeouts and 5xx answers are retried on the next candidate (or fallback
model), at least ``retry_delay`` after the previous attempt began. A 4xx is the client's
problem: it is passed through. Once a stream has started nothing is retried; an upstream that
dies mid-stream ends the client's stream with a terminal error event and counts as a failure.

A model served by prefill and decode backends is answered in two phases first: a prefill
backend returns an opaque ``kv_handle``, a decode backend generates from it. If either phase
finds no working backend, the unified backends answer as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import trio

from trio_router import Event, EventParser, EventStream, HTTPError, Request, Response, http_client, sleep

from .backends import Backend, Registry

Answer = Response | EventStream
_TWO_PHASE_PATHS = ("/v1/chat/completions", "/v1/completions")


def forward(registry: Registry, request: Request, path: str, body: dict[str, Any]) -> Answer:
    model = body["model"]
    if not registry.knows(model) and not registry.config.fallbacks.get(model):
        raise HTTPError(404, f"the model {model!r} does not exist", close=False, code="model_not_found")
    exchange = _Exchange(registry, path, body)
    if path in _TWO_PHASE_PATHS and registry.disaggregated(model):
        handle = exchange.prefill(registry.plan(model, trio.current_time(), role="prefill"))
        if handle is not None:
            decode = registry.plan(model, trio.current_time(), role="decode")
            answer = exchange.first_answer(decode, extra={"kv_handle": handle})
            if answer is not None:
                return answer
    answer = exchange.first_answer(registry.plan(model, trio.current_time()))
    if answer is not None:
        return answer
    if not exchange.attempts:
        raise HTTPError(503, f"no healthy backend serves {model!r} now", close=False, code="no_backend_available")
    raise HTTPError(
        502, f"every backend failed for {model!r}", close=False, code="backends_failed", attempts=exchange.attempts
    )


class _Exchange:
    """The attempts of one client request, and the time they cost (for the overhead header)."""

    def __init__(self, registry: Registry, path: str, body: dict[str, Any]) -> None:
        self.registry = registry
        self.path = path
        self.body = body
        config = registry.config
        self.timeout = httpx.Timeout(config.total_timeout, connect=config.connect_timeout)
        self.started = trio.current_time()
        self.upstream_seconds = 0.0
        self.attempts: list[dict[str, Any]] = []
        self._last_attempt = -float("inf")

    def first_answer(self, plan: Iterable[tuple[Backend, str]], extra: dict[str, Any] | None = None) -> Answer | None:
        """The first backend's answer that is not a failure, or None when all failed."""
        for backend, model in plan:
            answer = self._attempt(backend, model, self._payload(model, extra))
            if answer is not None:
                return answer
        return None

    def prefill(self, plan: Iterable[tuple[Backend, str]]) -> str | None:
        """The first prefill backend's ``kv_handle``, or None when none gave one."""
        for backend, model in plan:
            sent = self._pace()
            try:
                reply = http_client.post(
                    f"{backend.config.url}{self.path}",
                    json={**self._payload(model), "stream": False},
                    timeout=self.timeout,
                )
            except httpx.TransportError as exc:
                self._failed(backend, model, sent, _describe(exc))
                continue
            handle = reply.json().get("kv_handle") if reply.status_code == 200 else None
            if not isinstance(handle, str):
                self._failed(backend, model, sent, f"prefill answered HTTP {reply.status_code} without a kv_handle")
                continue
            self._succeeded(backend, model, sent, {"phase": "prefill", "status": 200})
            return handle
        return None

    def _attempt(self, backend: Backend, model: str, payload: dict[str, Any]) -> Answer | None:
        """The backend's answer, or None when it failed (a transport error before anything was
        handed to the client, or a 5xx). The backend's outstanding count covers the attempt
        however it ends, cancellation included, and a stream until the relay is closed."""
        sent = self._pace()
        backend.outstanding += 1
        upstream = None
        handed_over = False
        try:
            upstream = http_client.stream(
                "POST", f"{backend.config.url}{self.path}", json=payload, timeout=self.timeout
            )
            if upstream.status_code >= 500:
                detail = upstream.read()[:200].decode("utf-8", "replace")
                self._failed(backend, model, sent, f"HTTP {upstream.status_code}: {detail}")
                return None
            content_type = upstream.header("content-type") or "application/json"
            if upstream.status_code == 200 and content_type.startswith("text/event-stream"):
                self._succeeded(backend, model, sent, {"status": upstream.status_code})
                handed_over = True
                return EventStream(
                    _relay(upstream, self.registry, backend, model, sent), headers=self._headers(backend)
                )
            body = upstream.read()
            self._succeeded(backend, model, sent, {"status": upstream.status_code})  # a 4xx is the client's fault
            return Response(body, upstream.status_code, [("content-type", content_type), *self._headers(backend)])
        except httpx.TransportError as exc:
            self._failed(backend, model, sent, _describe(exc))
            return None
        finally:
            if not handed_over:
                backend.outstanding -= 1
                if upstream is not None:
                    upstream.close()

    def _payload(self, model: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        if model == self.body["model"] and not extra:
            return self.body
        return {**self.body, "model": model, **(extra or {})}

    def _pace(self) -> float:
        """Wait out ``retry_delay`` since the previous attempt began; the time this one begins."""
        wait = self._last_attempt + self.registry.config.retry_delay - trio.current_time()
        if self.attempts and wait > 0:
            sleep(wait)
        self._last_attempt = trio.current_time()
        return self._last_attempt

    def _succeeded(self, backend: Backend, model: str, sent: float, attempt: dict[str, Any]) -> None:
        now = trio.current_time()
        self.upstream_seconds += now - sent
        self.registry.record(backend, model, True, now - sent, now)
        self.attempts.append({"backend": backend.name, "model": model, **attempt})

    def _failed(self, backend: Backend, model: str, sent: float, error: str) -> None:
        now = trio.current_time()
        self.upstream_seconds += now - sent
        self.registry.record(backend, model, False, now - sent, now)
        self.attempts.append({"backend": backend.name, "error": error})

    def _headers(self, backend: Backend) -> list[tuple[str, str]]:
        overhead_ms = (trio.current_time() - self.started - self.upstream_seconds) * 1000
        return [
            ("x-router-backend", backend.name),
            ("x-router-attempts", str(len(self.attempts))),
            ("x-router-overhead-ms", f"{overhead_ms:.3f}"),
        ]


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


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
