"""OpenTelemetry export (the ``otel`` extra): one SERVER span per request, sent by OTLP/HTTP.

The span is built after the response went out, from what the server already knows: the W3C
trace context it accepted or started (so the span id is the one upstream calls carried in their
``traceparent``), the route template, the operationId, the status and the timing. Nothing of
OpenTelemetry's context machinery runs on the request path; spans are handed to the SDK's batch
processor, which exports from its own thread. The exporter reads the standard
``OTEL_EXPORTER_OTLP_*`` and ``OTEL_SERVICE_NAME`` environment variables.
"""

from __future__ import annotations

import os
import random
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..http.request import Request


class OtelUnavailable(Exception):
    """otel is enabled but the extra is not installed; the message says what to install."""


class SpanRecorder:
    """Turns finished requests into exported spans, sampling traces the caller did not sample."""

    def __init__(self, processor: Any, sample_ratio: float, service_name: str) -> None:
        from opentelemetry.sdk.resources import Resource  # the extra: imported only when enabled
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._processor = processor
        self._sample_ratio = sample_ratio
        # OTEL_SERVICE_NAME, when set, wins over the setting (the SDK reads it in Resource.create).
        self._resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name})
        self._server_kind = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)
        self._unset = Status(StatusCode.UNSET)

    def record(self, request: Request | None, method: str, status: int, seconds: float) -> None:
        if request is None:  # a head that never parsed: no trace to speak of
            return
        trace = request.trace
        if trace.parent_id is not None:
            if not int(trace.flags, 16) & 1:
                return  # the caller decided not to sample this trace
        elif random.random() >= self._sample_ratio:
            return
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, TraceFlags

        end = time.time_ns()
        sampled = TraceFlags(TraceFlags.SAMPLED)
        context = SpanContext(int(trace.trace_id, 16), int(trace.span_id, 16), is_remote=False, trace_flags=sampled)
        parent = None
        if trace.parent_id is not None:
            parent = SpanContext(int(trace.trace_id, 16), int(trace.parent_id, 16), is_remote=True, trace_flags=sampled)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "http.route": request.route,
            "http.response.status_code": status,
            "trio_router.operation_id": request.operation,
            "trio_router.request_id": request.id,
        }
        span = ReadableSpan(
            name=f"{method} {request.route}",
            context=context,
            parent=parent,
            resource=self._resource,
            attributes=attributes,
            kind=self._server_kind,
            status=self._error if status >= 500 else self._unset,
            start_time=end - int(seconds * 1e9),
            end_time=end,
        )
        self._processor.on_end(span)

    def shutdown(self) -> None:
        self._processor.shutdown()


def otlp_recorder(sample_ratio: float, service_name: str) -> SpanRecorder:
    """A recorder exporting in batches over OTLP/HTTP; OtelUnavailable without the extra."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise OtelUnavailable(
            "otel is enabled but OpenTelemetry is not installed: pip install 'trio-router[otel]'"
        ) from None
    return SpanRecorder(BatchSpanProcessor(OTLPSpanExporter()), sample_ratio, service_name)
