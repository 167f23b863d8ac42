"""Structured logs, request ids and trace propagation, from real servers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
import structlog

from tests.conftest import serve
from tests.sync_apps import SyncProbe, build_sync_app
from tests.test_cli import running
from trio_router import App, Request
from trio_router.observability.logs import REDACTED, Redactor, configure_logging
from trio_router.observability.tracing import TraceContext
from trio_router.settings import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _json_lines(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_access_log_line_has_the_fields_and_never_the_secrets() -> None:
    with running("--log-format", "json") as server:
        url = server.url()
        reply = httpx.get(
            url + "/health",
            headers={"x-request-id": "abc-123", "traceparent": TRACEPARENT, "authorization": "Bearer s3cr3t"},
            cookies={"session": "c00kie"},
        )
        assert reply.headers["x-request-id"] == "abc-123"
        missing = httpx.get(url + "/nope?email=someone@example.com")
        assert missing.json()["request_id"] == missing.headers["x-request-id"]
        assert server.stop() == 0
    records = _json_lines(server.lines)
    access = [r for r in records if r["event"] == "request"]
    health = next(r for r in access if r["operation"] == "health")
    assert health["method"] == "GET"
    assert health["route"] == "/health"
    assert health["status"] == 200
    assert health["bytes"] == len(b'{"status":"ok"}')
    assert health["request_id"] == "abc-123"
    assert health["trace_id"] == TRACE_ID
    assert health["client"].startswith("127.0.0.1:")
    assert health["duration_ms"] >= 0
    assert health["level"] == "info" and health["timestamp"].endswith("Z")
    unmatched = next(r for r in access if r["status"] == 404)
    assert unmatched["route"] == "<unmatched>"
    text = "".join(server.lines)
    for secret in ("s3cr3t", "c00kie", "someone@example.com"):
        assert secret not in text


def test_access_log_is_capped_per_second_and_counts_what_it_left_out() -> None:
    with running("--log-format", "json", "--access-log-max-per-second", "5") as server:
        url = server.url()
        with httpx.Client() as client:
            for _ in range(50):
                client.get(url + "/health")
            time.sleep(1.1)
            client.get(url + "/health")  # a new second: the summary of the last one comes out
        assert server.stop() == 0
    records = _json_lines(server.lines)
    logged = sum(1 for r in records if r["event"] == "request")
    suppressed = sum(r["suppressed"] for r in records if r["event"] == "access log sampled")
    assert logged <= 15  # at most 5 per second over the burst's seconds
    assert logged + suppressed == 51  # nothing silently lost


def test_console_format_is_readable() -> None:
    with running("--log-format", "console") as server:
        httpx.get(server.url() + "/health")
        assert server.stop() == 0
    line = next(line for line in server.lines if "operation=health" in line)
    assert not line.startswith("{")
    assert "status=200" in line


def test_redactor_scrubs_secret_fields_at_any_depth() -> None:
    redact = Redactor(["Password"])
    event = {"Authorization": "Bearer x", "nested": {"cookie": "y", "password": "z", "ok": 1}, "event": "e"}
    assert redact(None, "info", event) == {
        "Authorization": REDACTED,
        "nested": {"cookie": REDACTED, "password": REDACTED, "ok": 1},
        "event": "e",
    }


def test_trace_context_accepts_valid_headers_only() -> None:
    context = TraceContext.from_header(TRACEPARENT.encode())
    assert (context.trace_id, context.parent_id, context.flags) == (TRACE_ID, "00f067aa0ba902b7", "01")
    assert context.outgoing() == f"00-{TRACE_ID}-{context.span_id}-01"
    for bad in (b"garbage", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", TRACEPARENT.upper().encode(), None):
        fresh = TraceContext.from_header(bad)
        assert fresh.parent_id is None and len(fresh.trace_id) == 32


async def test_trace_and_request_id_propagate_to_upstream_calls() -> None:
    async with serve(build_sync_app(SyncProbe())) as upstream:
        app = build_sync_app(SyncProbe(), upstream=f"http://127.0.0.1:{upstream.port}")
        async with serve(app) as gateway:
            client = await gateway.connect()
            reply = await client.request(
                "GET", "/proxy-headers", headers=[("traceparent", TRACEPARENT), ("x-request-id", "req-9")]
            )
            seen = reply.json()
            assert seen["trace_id"] == TRACE_ID
            assert seen["upstream_saw"] == {
                "traceparent": f"00-{TRACE_ID}-{seen['span_id']}-01",  # our span is the upstream's parent
                "x-request-id": "req-9",
            }


@pytest.fixture
def own_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_pii_in_log_lines_is_written_redacted(capsys: pytest.CaptureFixture[str], own_logging: None) -> None:
    configure_logging(Settings(log_format="json"))
    try:
        raise ValueError("no account for ann@example.com")
    except ValueError:
        logging.getLogger("tests.pii").exception("lookup failed for card %s", "4111 1111 1111 1111")
    structlog.get_logger("tests.pii").info(
        "signup", contact={"email": "bob@example.org", "phone": "(555) 123-4567"}, client="10.0.0.1:80",
        request_id="555-123-4567",
    )  # fmt: skip
    failed, signup = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert failed["event"] == "lookup failed for card [REDACTED:credit_card]"
    assert "ann@example.com" not in failed["exception"] and "no account for [REDACTED:email]" in failed["exception"]
    assert signup["contact"] == {"email": "[REDACTED:email]", "phone": "[REDACTED:phone]"}
    # What the server writes to identify things is left alone (an IP address is not scrubbed at all).
    assert (signup["client"], signup["request_id"]) == ("10.0.0.1:80", "555-123-4567")


def test_pii_redaction_in_logs_can_be_turned_off(capsys: pytest.CaptureFixture[str], own_logging: None) -> None:
    configure_logging(Settings(log_format="json", log_redact_pii=False))
    logging.getLogger("tests.pii").warning("mail ann@example.com")
    assert json.loads(capsys.readouterr().err)["event"] == "mail ann@example.com"


async def test_lines_logged_while_serving_carry_the_request_id_and_tenant(
    capsys: pytest.CaptureFixture[str], own_logging: None
) -> None:
    configure_logging(Settings(log_format="json"))
    app = App()

    @app.route("GET", "/work")
    def work(request: Request) -> dict[str, bool]:
        request.tenant = "acme"  # what an app sets once it knows who is calling
        logging.getLogger("tests.work").warning("working")
        return {"ok": True}

    async with serve(app) as running:
        client = await running.connect()
        await client.request("GET", "/work", headers=[("x-request-id", "req-7")])
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    (line,) = [entry for entry in logged if entry["event"] == "working"]
    assert (line["request_id"], line["tenant"]) == ("req-7", "acme")
    (access,) = [entry for entry in logged if entry["event"] == "request"]
    assert access["tenant"] == "acme"
    structlog.get_logger("tests.work").info("outside any request")
    assert "tenant" not in json.loads(capsys.readouterr().err)
