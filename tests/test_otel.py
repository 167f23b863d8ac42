"""OpenTelemetry export: spans carry the W3C trace the server accepted or started (so they link
with upstream calls), sampling follows the caller, and `trio-router run --otel` delivers them
over OTLP/HTTP to a collector (here a local receiver)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import serve
from tests.sync_apps import SyncProbe, build_sync_app
from tests.test_cli import running
from trio_router.observability.otel import SpanRecorder

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def recorder(ratio: float = 1.0) -> tuple[SpanRecorder, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return SpanRecorder(SimpleSpanProcessor(exporter), ratio, "tests"), exporter


async def test_spans_link_caller_gateway_and_upstream() -> None:
    upstream_spans, upstream_exported = recorder()
    gateway_spans, gateway_exported = recorder()
    async with serve(build_sync_app(SyncProbe()), spans=upstream_spans) as upstream:
        app = build_sync_app(SyncProbe(), upstream=f"http://127.0.0.1:{upstream.port}")
        async with serve(app, spans=gateway_spans) as gateway:
            client = await gateway.connect()
            traceparent = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
            reply = await client.request("GET", "/proxy-headers", headers=[("traceparent", traceparent)])
            assert reply.status == 200
    [span] = gateway_exported.get_finished_spans()
    assert span.name == "GET /proxy-headers" and span.kind is SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == CALLER_SPAN
    assert f"{span.context.span_id:016x}" == reply.json()["span_id"]  # the id upstream calls carried
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["trio_router.request_id"] == reply.headers["x-request-id"]
    assert span.end_time > span.start_time
    [upstream_span] = upstream_exported.get_finished_spans()
    assert upstream_span.parent is not None and upstream_span.parent.span_id == span.context.span_id


async def test_sampling_follows_the_caller_and_the_ratio() -> None:
    spans, exported = recorder(ratio=0.0)
    async with serve(build_sync_app(SyncProbe()), spans=spans) as running_server:
        client = await running_server.connect()
        await client.request("GET", "/where", headers=[("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-00")])
        await client.request("GET", "/where")  # a new trace, sampled at ratio 0
        await client.request("GET", "/where", headers=[("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01")])
        await client.request("GET", "/missing-route", headers=[("traceparent", f"00-{TRACE_ID}-{CALLER_SPAN}-01")])
    names = [span.name for span in exported.get_finished_spans()]
    assert names == ["GET /where", "GET <unmatched>"]  # only the caller-sampled ones
    assert exported.get_finished_spans()[0].status.status_code is StatusCode.UNSET


@contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            if self.path == "/v1/traces":
                received.append(ExportTraceServiceRequest.FromString(body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()


def test_trio_router_run_exports_spans_over_otlp() -> None:
    with otlp_receiver() as (endpoint, received):
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "petstore"}
        with running("--otel", env=env) as server:
            httpx.get(server.url() + "/pets/1", headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
            assert server.stop() == 0  # the batch is flushed on shutdown
    spans = [
        (resource.resource, span)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    [(resource, span)] = [(r, s) for r, s in spans if s.name == "GET /pets/{pet_id}"]
    assert span.trace_id.hex() == TRACE_ID and span.parent_span_id.hex() == CALLER_SPAN
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "petstore"
