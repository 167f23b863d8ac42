"""Prometheus metrics, cheap on the hot path and exact at scrape time.

Per request the server does one dict increment and one histogram bucket increment on plain
Python ints (no locks, no label lookups: prometheus-client's labelled ``inc()`` costs more
than that). Everything else (connections, in-flight requests, handler greenlets, shed
requests) is read from the server's own state when /metrics is scraped. prometheus-client
renders the exposition format.

With ``--workers N`` each worker writes a snapshot of its counters to a shared directory
once a second; a scrape answered by any worker sums its live figures with the others'
snapshots, so the numbers cover the whole server (at most a second stale for the others).
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
UNMATCHED = "<unmatched>"  # requests no route claimed: the raw path is never a label
CONTENT_TYPE = CONTENT_TYPE_LATEST

RequestKey = tuple[str, str, int]  # operation, method, status

# Labelled event counters: name -> (help, label names). Every label value comes from the spec,
# the policy or a fixed set, never from a client, so cardinality stays bounded.
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "request_rejections": (
        "Requests refused by the API contract, by operation and reason (invalid_path, invalid_query,"
        " invalid_header, invalid_cookie, invalid_body, unsupported_media_type, unauthenticated, forbidden).",
        ("operation", "reason"),
    ),
    "guardrail_verdicts": (
        "Streaming guardrail verdicts, by operation, rule and action (redact, truncate, flag).",
        ("operation", "rule", "action"),
    ),
    "guardrail_forced_flushes": (
        "Held stream text forced out by the window, max hold time or deadline, by operation.",
        ("operation",),
    ),
    "stream_severs": (
        "Event streams the server ended early, by operation and reason (deadline, guardrail, internal).",
        ("operation", "reason"),
    ),
    "guardrail_sink_failures": ("Verdicts a SIEM sink failed to write, by sink.", ("sink",)),
}


def declare_counter(name: str, documentation: str, labels: tuple[str, ...]) -> None:
    """An app's own counter (App.counter); declaring the same one again is harmless."""
    known = COUNTERS.get(name)
    if known is not None and known[1] != labels:
        raise ValueError(f"counter {name!r} is already declared with labels {known[1]}")
    COUNTERS[name] = (documentation, labels)


@dataclass
class RequestStats:
    """Counters one process accumulates; mergeable across workers."""

    requests: dict[RequestKey, int] = field(default_factory=dict)
    # operation -> [count per bucket (non-cumulative, last one is +Inf)..., sum of seconds]
    durations: dict[str, list[float]] = field(default_factory=dict)
    # counter name (a key of COUNTERS) -> label values -> count
    counters: dict[str, dict[tuple[str, ...], int]] = field(default_factory=dict)

    def count(self, name: str, *labels: str, by: int = 1) -> None:
        counter = self.counters.get(name)
        if counter is None:
            counter = self.counters[name] = {}
        counter[labels] = counter.get(labels, 0) + by

    def reject(self, operation: str, reason: str) -> None:
        self.count("request_rejections", operation, reason)

    def record(self, operation: str, method: str, status: int, seconds: float) -> None:
        if method not in KNOWN_METHODS:
            method = "OTHER"  # bounded cardinality: a client cannot invent label values
        key = (operation, method, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        histogram = self.durations.get(operation)
        if histogram is None:
            histogram = self.durations[operation] = [0.0] * (len(BUCKETS) + 2)
        histogram[bisect.bisect_left(BUCKETS, seconds)] += 1
        histogram[-1] += seconds

    def merge(self, other: RequestStats) -> None:
        for key, count in other.requests.items():
            self.requests[key] = self.requests.get(key, 0) + count
        for operation, histogram in other.durations.items():
            mine = self.durations.setdefault(operation, [0.0] * (len(BUCKETS) + 2))
            for i, value in enumerate(histogram):
                mine[i] += value
        for name, counter in other.counters.items():
            for labels, count in counter.items():
                self.count(name, *labels, by=count)

    def to_json(self) -> str:
        return json.dumps(
            {
                "requests": [[*key, count] for key, count in self.requests.items()],
                "durations": self.durations,
                "counters": {
                    name: [[*labels, n] for labels, n in counter.items()] for name, counter in self.counters.items()
                },
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RequestStats:
        data = json.loads(text)
        return cls(
            requests={(op, method, int(status)): count for op, method, status, count in data["requests"]},
            durations={op: [float(v) for v in values] for op, values in data["durations"].items()},
            counters={
                name: {tuple(row[:-1]): row[-1] for row in rows} for name, rows in data.get("counters", {}).items()
            },
        )


@dataclass
class Gauges:
    """What is read from the server's state at scrape time."""

    open_connections: float = 0
    in_flight: float = 0
    handlers_active: float = 0
    handlers_suspended: float = 0
    handlers_pooled: float = 0
    handlers_queued: float = 0
    shed_requests: float = 0
    suspended_handler_bytes: float = 0.0

    def merge(self, other: Gauges) -> None:
        for name, value in vars(other).items():
            if name != "suspended_handler_bytes":
                setattr(self, name, getattr(self, name) + value)
        self.suspended_handler_bytes = max(self.suspended_handler_bytes, other.suspended_handler_bytes)


class _Snapshot(Collector):
    def __init__(self, stats: RequestStats, gauges: Gauges) -> None:
        self.stats = stats
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "trio_router_requests",
            "Requests answered, by operation, method and status.",
            labels=["operation", "method", "status"],
        )
        for (operation, method, status), count in sorted(self.stats.requests.items()):
            requests.add_metric([operation, method, str(status)], count)
        yield requests

        durations = HistogramMetricFamily(
            "trio_router_request_duration_seconds",
            "Time from request head to response sent.",
            labels=["operation"],
        )
        for operation, histogram in sorted(self.stats.durations.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for bound, in_bucket in zip((*BUCKETS, float("inf")), histogram[:-1], strict=True):
                cumulative += in_bucket
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric([operation], buckets, sum_value=histogram[-1])
        yield durations

        for name, (documentation, labels) in COUNTERS.items():
            family = CounterMetricFamily(f"trio_router_{name}", documentation, labels=list(labels))
            for values, count in sorted(self.stats.counters.get(name, {}).items()):
                family.add_metric(list(values), count)
            yield family

        gauges = self.gauges
        yield CounterMetricFamily(
            "trio_router_shed_requests", "Requests refused with 503 at the handler limit.", value=gauges.shed_requests
        )
        for name, documentation, value in (
            ("open_connections", "Open client connections.", gauges.open_connections),
            ("in_flight_requests", "Requests being handled or answered.", gauges.in_flight),
            ("handler_greenlets_active", "Sync handlers in progress (running or suspended).", gauges.handlers_active),
            ("handler_greenlets_suspended", "Sync handlers waiting on the bridge.", gauges.handlers_suspended),
            ("handler_greenlets_pooled", "Idle worker greenlets ready for reuse.", gauges.handlers_pooled),
            ("handler_queue_waiting", "Requests waiting for a handler slot.", gauges.handlers_queued),
            (
                "suspended_handler_bytes",
                "Python heap bytes per suspended sync handler, greenlet and task (measured after the first scrape).",
                gauges.suspended_handler_bytes,
            ),
        ):
            yield GaugeMetricFamily(f"trio_router_{name}", documentation, value=value)


def render(stats: RequestStats, gauges: Gauges) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stats, gauges))
    return generate_latest(registry)


@dataclass
class SharedSnapshots:
    """Per-worker snapshot files in one directory: ``worker-<id>.json``."""

    directory: Path
    worker_id: str

    @property
    def path(self) -> Path:
        return self.directory / f"worker-{self.worker_id}.json"

    def write(self, stats: RequestStats, gauges: Gauges) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"stats": stats.to_json(), "gauges": vars(gauges)}))
        os.replace(temporary, self.path)  # atomic: a reader never sees half a file

    def read_others(self) -> Iterator[tuple[RequestStats, Gauges]]:
        for path in self.directory.glob("worker-*.json"):
            if path == self.path:
                continue
            try:
                data = json.loads(path.read_text())
                yield RequestStats.from_json(data["stats"]), Gauges(**data["gauges"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a worker mid-restart: its figures return with its next snapshot
