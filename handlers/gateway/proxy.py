"""Forwarding one request: try the planned backends in order, retry what failed before any
byte reached the client, relay streams event by event (through the framework's guardrails).

What an attempt's outcome means (the whole table, with what the client sees: docs/gateway.md):
- no connection, no response head within ``first_byte_timeout``, a 5xx, a 200 that is not the
  answer asked for (not JSON, not the endpoint's shape, over ``max_response_bytes``, a plain
  answer to a stream request or the reverse): a failed attempt (the breaker counts it), then the
  next candidate (or fallback model), at least ``retry_delay`` after the previous one began;
- a 429: the next candidate; the backend cools down for its Retry-After (not a breaker
  failure); the client gets 429 only when every candidate was rate-limited;
- another 4xx: the client's problem, passed on in OpenAI's error shape;
- a stream, once it began: relay.py; with ``stream_resume`` for the model, a cut chat stream
  continues on the next candidate (resume.py).

Every attempt that reached a backend and did not give the answer is reported to the
``AttemptLog`` (the tenancy meter writes a usage record for it).

A model served by prefill and decode backends is answered in two phases first: a prefill
backend returns an opaque ``kv_handle``, a decode backend generates from it. If either phase
finds no working backend, the unified backends answer as usual.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Protocol, cast

import httpx
import trio

from trio_router import (
    Event,
    EventStream,
    HTTPError,
    Request,
    Response,
    ResponseTooLarge,
    StreamError,
    http_client,
    sleep,
)

from .answers import JSONAnswer, client_error_body, media_type, parse_answer, quote
from .backends import Backend, Registry
from .relay import relay
from .resume import continuation, resumable, unsafe

Answer = Response | EventStream
Plan = Iterator[tuple[Backend, str]]
_CHAT = "/v1/chat/completions"
_TWO_PHASE_PATHS = (_CHAT, "/v1/completions")
_ERROR_BYTES = 65536  # of a 4xx body: an error message, not a document


class AttemptLog(Protocol):
    def attempt_ended(self, backend: str, status: int, outcome: str, number: int, relayed: bool = False) -> None:
        """The ``number``-th attempt reached ``backend`` and did not give the answer (``outcome``:
        upstream_error, upstream_invalid, upstream_timeout, upstream_closed, upstream_oversized,
        rate_limited, or a cut stream's code); ``relayed``: it was a stream cut after part of
        the answer went to the client, and continued elsewhere."""

    def stream_moved(self, backend: str, number: int) -> None:
        """A cut stream goes on from ``backend``, the request's ``number``-th attempt."""


def forward(registry: Registry, request: Request, path: str, body: dict[str, Any], log: AttemptLog) -> Answer:
    model = body["model"]
    if not registry.knows(model) and not registry.config.fallbacks.get(model):
        raise HTTPError(404, f"the model {model!r} does not exist", close=False, code="model_not_found")
    exchange = _Exchange(registry, path, body, log)
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
    raise exchange.no_answer(model)


class _Exchange:
    """The attempts of one client request, and the time they cost (for the overhead header)."""

    def __init__(self, registry: Registry, path: str, body: dict[str, Any], log: AttemptLog) -> None:
        self.registry = registry
        self.path = path
        self.body = body
        self.log = log
        config = registry.config
        self.config = config
        self.timeout = httpx.Timeout(config.stream_idle_timeout, connect=config.connect_timeout)
        self.streamed = path in _TWO_PHASE_PATHS and body.get("stream") is True
        self.started = trio.current_time()
        self.upstream_seconds = 0.0
        self.attempts: list[dict[str, Any]] = []
        self.rate_limited: list[float] = []  # the Retry-After of each 429
        self._last_attempt = -float("inf")
        self._streaming: tuple[str, int] = ("", 0)  # the backend relaying the stream, its attempt number

    def no_answer(self, model: str) -> HTTPError:
        """Why no backend answered: every candidate rate-limited (429, the soonest Retry-After),
        none could be asked (503, when one may be again), or every attempt failed (502)."""
        now = trio.current_time()
        cooling = self.registry.cooling(model, now) if not self.attempts else None
        if cooling is not None or (self.rate_limited and len(self.rate_limited) == len(self.attempts)):
            wait = cooling if cooling is not None else min(self.rate_limited)
            message = f"every backend serving {model!r} is rate-limited; retry after {_seconds(wait)} s"
            return _retry_later(429, message, wait, "rate_limit_exceeded")
        if not self.attempts:
            wait = self.registry.retry_after(model, now)
            return _retry_later(503, f"no healthy backend serves {model!r} now", wait, "no_backend_available")
        return HTTPError(
            502, f"every backend failed for {model!r}", close=False, code="backends_failed", attempts=self.attempts
        )

    def first_answer(self, plan: Iterable[tuple[Backend, str]], extra: dict[str, Any] | None = None) -> Answer | None:
        """The first backend's answer that is not a failure, or None when all failed."""
        plan = iter(plan)
        for backend, model in plan:
            answer = self._attempt(backend, model, self._payload(model, extra))
            if answer is None:
                continue
            settings = self.config.stream_resume.get(model)
            if isinstance(answer, EventStream) and settings is not None and not extra and self.path == _CHAT:
                events = cast(Iterator[Event], answer.source)  # relay()'s generator
                answer.source = resumable(events, partial(self._go_on, plan), settings.max_resumes)
            return answer
        return None

    def _go_on(self, plan: Plan, sent: str, cut: StreamError) -> Iterator[Event] | None:
        """A cut chat stream's continuation from the plan's next candidate that answers one,
        or None; the cut attempt is logged with what it relayed once another goes on."""
        reason = unsafe(self.body)
        if reason is not None:
            raise StreamError(f"{cut.detail}; not continued: {reason}", code=cut.code)
        cut_backend, cut_number = self._streaming
        for backend, model in plan:
            settings = self.config.stream_resume.get(model)
            if settings is None:  # a fallback model not configured to continue
                continue
            answer = self._attempt(backend, model, continuation(self.body, model, sent, settings))
            if isinstance(answer, EventStream):
                self.log.attempt_ended(cut_backend, 200, cut.code, cut_number, relayed=True)
                self.log.stream_moved(backend.name, len(self.attempts))
                return cast(Iterator[Event], answer.source)
        return None

    def prefill(self, plan: Iterable[tuple[Backend, str]]) -> str | None:
        """The first prefill backend's ``kv_handle``, or None when none gave one."""
        for backend, model in plan:
            sent = self._pace()
            try:
                upstream = self._open(backend, {**self._payload(model), "stream": False})
                try:
                    reply = upstream.read(self.config.max_response_bytes) if upstream.status_code == 200 else b""
                finally:
                    upstream.close()
            except httpx.TransportError as exc:
                self._transport_failed(backend, model, sent, exc)
                continue
            payload = _json_object(reply)
            handle = payload.get("kv_handle") if payload is not None else None
            if not isinstance(handle, str):
                self._failed(backend, model, sent, f"prefill answered HTTP {upstream.status_code} without a kv_handle")
                self._reached(backend, upstream.status_code, "upstream_invalid")
                continue
            self._succeeded(backend, model, sent, {"phase": "prefill", "status": 200})
            return handle
        return None

    def _attempt(self, backend: Backend, model: str, payload: dict[str, Any]) -> Answer | None:
        """The backend's answer, or None when it failed or was rate-limited (see the module's
        docstring). The backend's outstanding count covers the attempt however it ends,
        cancellation included, and a stream until the relay is closed."""
        sent = self._pace()
        backend.outstanding += 1
        upstream = None
        handed_over = False
        try:
            upstream = self._open(backend, payload)
            status = upstream.status_code
            if status == 429:
                self._cool_down(backend, model, sent, upstream.header("retry-after"))
                return None
            if status >= 500:
                detail = quote(upstream.read_prefix(800).decode("utf-8", "replace"))
                self._failed(backend, model, sent, f"HTTP {status}" + (f": {detail}" if detail else ""))
                self._reached(backend, status, "upstream_error")
                return None
            content_type = upstream.header("content-type") or ""
            if status == 200:
                streamed = media_type(content_type) == "text/event-stream"
                if streamed != self.streamed:
                    asked = "a stream" if self.streamed else "a plain answer"
                    self._failed(backend, model, sent, f"answered HTTP 200 with {content_type or 'no content type'} "
                                 f"to a request for {asked}")  # fmt: skip
                    self._reached(backend, status, "upstream_invalid")
                    return None
                if streamed:
                    self._succeeded(backend, model, sent, {"status": status})
                    self._streaming = (backend.name, len(self.attempts))
                    handed_over = True
                    events = relay(upstream, self.registry, backend, model, sent)
                    return EventStream(events, headers=self._headers(backend))
                body = upstream.read(self.config.max_response_bytes)
                answer = parse_answer(self.path, content_type, body)
                if isinstance(answer, str):
                    self._failed(backend, model, sent, answer)
                    self._reached(backend, status, "upstream_invalid")
                    return None
                self._succeeded(backend, model, sent, {"status": status})
                return JSONAnswer(body, answer, [("content-type", content_type), *self._headers(backend)])
            error = client_error_body(status, content_type, upstream.read_prefix(_ERROR_BYTES))
            self._succeeded(backend, model, sent, {"status": status})  # a 4xx is the client's fault
            return Response(error, status, [("content-type", "application/json"), *self._headers(backend)])
        except httpx.TransportError as exc:
            self._transport_failed(backend, model, sent, exc)
            return None
        finally:
            if not handed_over:
                backend.outstanding -= 1
                if upstream is not None:
                    upstream.close()

    def _open(self, backend: Backend, payload: dict[str, Any]) -> Any:
        return http_client.stream(
            "POST",
            f"{backend.config.url}{self.path}",
            json=payload,
            timeout=self.timeout,
            head_timeout=self.config.first_byte_timeout,
        )

    def _cool_down(self, backend: Backend, model: str, sent: float, retry_after: str | None) -> None:
        """A 429: that backend's own limit, not a fault; ask it again after its Retry-After."""
        now = trio.current_time()
        self.upstream_seconds += now - sent
        wait = min(_retry_after(retry_after, self.config.rate_limit_cooldown), self.config.max_cooldown)
        backend.cooling_until = max(backend.cooling_until, now + wait)
        backend.rate_limited += 1
        self.rate_limited.append(wait)
        self.attempts.append({"backend": backend.name, "model": model, "status": 429, "retry_after": wait})
        self._reached(backend, 429, "rate_limited")

    def _transport_failed(self, backend: Backend, model: str, sent: float, exc: httpx.TransportError) -> None:
        self._failed(backend, model, sent, self._describe(exc))
        outcome = _reached_outcome(exc)
        if outcome is not None:  # it reached the backend
            self._reached(backend, 504 if outcome == "upstream_timeout" else 502, outcome)

    def _reached(self, backend: Backend, status: int, outcome: str) -> None:
        """The attempt just appended reached its backend without giving the answer."""
        self.log.attempt_ended(backend.name, status, outcome, len(self.attempts))

    def _describe(self, exc: httpx.TransportError) -> str:
        """An attempt's failure in words that name no internal address."""
        if isinstance(exc, ResponseTooLarge):
            return f"answered with more than the gateway accepts ({exc})"
        if isinstance(exc, httpx.ConnectTimeout):
            return f"no connection within {self.config.connect_timeout:g} s"
        if isinstance(exc, httpx.ConnectError):
            return "cannot be connected to"
        if isinstance(exc, httpx.ReadTimeout):
            return f"no answer within {self.config.first_byte_timeout:g} s"
        return f"{type(exc).__name__}: {exc}".rstrip(": ")

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


def _reached_outcome(exc: httpx.TransportError) -> str | None:
    """A transport failure's outcome for the usage record; None when the request never
    reached the backend (no connection)."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return None
    if isinstance(exc, ResponseTooLarge):
        return "upstream_oversized"
    if isinstance(exc, httpx.TimeoutException):
        return "upstream_timeout"
    return "upstream_closed"


def _retry_later(status: int, message: str, wait: float, code: str) -> HTTPError:
    return HTTPError(status, message, close=False, headers=[(b"retry-after", _seconds(wait).encode())], code=code)


def _seconds(wait: float) -> str:
    """Whole seconds for Retry-After, rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))


def _retry_after(value: str | None, default: float) -> float:
    """A Retry-After header's seconds (a number or an HTTP date); ``default`` when absent or unusable."""
    if not value:
        return default
    value = value.strip()
    if value.isascii() and value.isdigit() and len(value) <= 9:
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return default
    if when.tzinfo is None:
        return default
    return max(0.0, when.timestamp() - time.time())


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None
