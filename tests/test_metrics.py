"""/metrics scraped from a real server after known traffic, parsed with prometheus-client's parser."""

from __future__ import annotations

import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.apps import Probe, build_app
from tests.conftest import Running, raw_request, serve
from tests.sync_apps import SyncProbe, build_sync_app


async def scrape(running: Running) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    client = await running.connect()
    reply = await client.request("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    await client.aclose()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply.body.decode())
        for sample in family.samples
    }


def requests(samples: dict, operation: str, method: str, status: str) -> float:
    labels = (("method", method), ("operation", operation), ("status", status))
    return samples.get(("trio_router_requests_total", labels), 0)


async def test_request_counts_and_durations_by_operation_never_by_raw_path() -> None:
    async with serve(build_app(Probe())) as running:
        client = await running.connect()
        for _ in range(3):
            await client.request("GET", "/hello")
        await client.request("GET", "/no-such-path-12345")
        await client.request("POST", "/echo", b"x")
        other = await running.connect()  # an unknown method is 501 and closes its connection
        await other.request("BREW", "/hello")
        samples = await scrape(running)
        assert requests(samples, "hello", "GET", "200") == 3
        assert requests(samples, "echo", "POST", "200") == 1
        assert requests(samples, "<unmatched>", "GET", "404") == 1
        assert requests(samples, "<unmatched>", "OTHER", "501") == 1  # no label value a client can invent
        assert samples[("trio_router_request_duration_seconds_count", (("operation", "hello"),))] == 3
        assert samples[("trio_router_request_duration_seconds_bucket", (("le", "+Inf"), ("operation", "hello")))] == 3
        assert not any("no-such-path" in str(key) for key in samples)
        assert samples[("trio_router_open_connections", ())] >= 2
        assert samples[("trio_router_in_flight_requests", ())] == 1  # the scrape itself
        # The scrape is counted too, under its own name.
        assert requests(await scrape(running), "metrics", "GET", "200") == 1


async def test_handler_greenlet_gauges_and_shed_requests() -> None:
    probe = SyncProbe()
    async with serve(build_sync_app(probe), max_handlers=1, handler_overflow="shed") as running:
        napper = await running.connect()
        await napper.send(raw_request("GET", "/nap"))
        await probe.started.wait()
        await trio.testing.wait_all_tasks_blocked()
        extra = await running.connect()
        assert (await extra.request("GET", "/where")).status == 503
        samples = await scrape(running)
        assert samples[("trio_router_handler_greenlets_active", ())] == 1
        assert samples[("trio_router_handler_greenlets_suspended", ())] == 1
        assert samples[("trio_router_shed_requests_total", ())] == 1
        await napper.aclose()
        await probe.finished.wait()
        await trio.testing.wait_all_tasks_blocked()
        samples = await scrape(running)
        assert samples[("trio_router_handler_greenlets_active", ())] == 0
        assert samples[("trio_router_handler_greenlets_pooled", ())] == 1


async def test_bytes_per_suspended_handler_is_measured_after_the_first_scrape() -> None:
    async with serve(build_app(Probe())) as running:
        with trio.fail_after(10):
            while True:
                value = (await scrape(running))[("trio_router_suspended_handler_bytes", ())]
                if value:
                    break
                await trio.sleep(0.05)
        assert 500 < value < 64_000


async def test_metrics_can_be_turned_off() -> None:
    async with serve(build_app(Probe()), metrics_path="") as running:
        client = await running.connect()
        assert (await client.request("GET", "/metrics")).status == 404


def test_dashboard_queries_only_metrics_the_server_exports() -> None:
    import json
    import re
    from pathlib import Path

    from trio_router.observability.metrics import Gauges, RequestStats, render

    stats = RequestStats()
    stats.record("op", "GET", 200, 0.01)
    exported = {family.name for family in text_string_to_metric_families(render(stats, Gauges()).decode())}
    dashboard = json.loads((Path(__file__).resolve().parent.parent / "docs" / "dashboard.json").read_text())
    queried = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"trio_router_\w+", target["expr"])
    }
    assert queried and queried <= exported


async def test_guardrail_verdicts_and_stream_severs_are_counted(autojump_clock: trio.testing.MockClock) -> None:
    from collections.abc import AsyncIterator

    from trio_router import App, EventStream, Request

    app = App()

    @app.route("GET", "/mail")
    def mail(request: Request) -> EventStream:
        return EventStream(iter(["write to ann@", "example.com or bob@example.org."]))

    @app.route("GET", "/key")
    def key(request: Request) -> EventStream:
        return EventStream(iter(["key AKIAABCDEFGHIJKLMNOP", "never sent"]))

    @app.route("GET", "/forever", timeout=2)
    def forever(request: Request) -> EventStream:
        async def silent() -> AsyncIterator[str]:
            yield "started"
            await trio.sleep_forever()

        return EventStream(silent())

    async with serve(app) as running:
        client = await running.connect()
        for path in ("/mail", "/key", "/forever"):
            assert (await client.request("GET", path)).status == 200
        samples = await scrape(running)
    verdicts = "trio_router_guardrail_verdicts_total"
    assert samples[(verdicts, (("action", "redact"), ("operation", "mail"), ("rule", "pii.email")))] == 2
    assert samples[(verdicts, (("action", "truncate"), ("operation", "key"), ("rule", "blocked.aws-access-key")))] == 1
    severs = "trio_router_stream_severs_total"
    assert samples[(severs, (("operation", "key"), ("reason", "guardrail")))] == 1
    assert samples[(severs, (("operation", "forever"), ("reason", "deadline")))] == 1
    assert not any(key[0] == severs and ("operation", "mail") in key[1] for key in samples)  # it ended on its own
