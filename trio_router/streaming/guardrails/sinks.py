"""Where guardrail verdicts go: SIEM sinks (CEF and JSON lines, to a file or stdout), the
structured log, and the metrics. A sink that fails is counted and logged (at most once a
minute per sink); it never breaks the stream that produced the verdict.

Sink specs (setting ``guardrail_sinks``): ``log`` (a structlog event ``guardrail_verdict``),
``json:-`` / ``json:<path>`` (one JSON object per line), ``cef:-`` / ``cef:<path>`` (ArcSight
Common Event Format). Files are opened once, in append mode, line-buffered.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import structlog

from ...observability.metrics import RequestStats
from .evaluator import Verdict

log = logging.getLogger("trio_router.guardrails")
_PRODUCT_VERSION = "0.1.0"
_SEVERITY = {"truncate": 8, "redact": 5, "flag": 3}


class SinkError(Exception):
    """A sink cannot be opened; the message is meant for a human."""


@dataclass(frozen=True, slots=True)
class VerdictRecord:
    """A verdict with where it happened. Never carries the matched text."""

    verdict: Verdict
    request_id: str
    operation: str
    tenant: str | None
    time: float  # seconds since the epoch

    def as_dict(self) -> dict[str, object]:
        v = self.verdict
        return {
            "time": self.time,
            "rule": v.rule,
            "category": v.category,
            "kind": v.kind,
            "action": v.action,
            "start": v.start,
            "end": v.end,
            "request_id": self.request_id,
            "operation": self.operation,
            "tenant": self.tenant,
        }


class Sink(Protocol):
    name: str

    def write(self, record: VerdictRecord) -> None: ...


class LogSink:
    name = "log"

    def __init__(self) -> None:
        self._log = structlog.get_logger("trio_router.guardrails")

    def write(self, record: VerdictRecord) -> None:
        self._log.info("guardrail_verdict", **record.as_dict())


class LineSink:
    """JSON or CEF lines to stdout (``-``) or a file."""

    def __init__(self, kind: str, target: str) -> None:
        self.name = f"{kind}:{target}"
        self._format = json_line if kind == "json" else cef_line
        self._stream: IO[str] = sys.stdout if target == "-" else _open_append(Path(target))

    def write(self, record: VerdictRecord) -> None:
        self._stream.write(self._format(record) + "\n")
        if self._stream is sys.stdout:
            self._stream.flush()


def _open_append(path: Path) -> IO[str]:
    try:
        return path.open("a", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise SinkError(f"guardrail sink {path}: {exc.strerror}") from None


def json_line(record: VerdictRecord) -> str:
    return json.dumps(record.as_dict(), separators=(",", ":"))


def _cef_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def cef_line(record: VerdictRecord) -> str:
    """``CEF:0|Vendor|Product|Version|SignatureID|Name|Severity|Extension`` (escaping per the spec)."""
    v = record.verdict
    header = "|".join(
        _cef_header(part)
        for part in (
            "CEF:0",
            "trio-router",
            "trio-router",
            _PRODUCT_VERSION,
            v.rule,
            f"guardrail {v.action}: {v.kind}",
            str(_SEVERITY[v.action]),
        )
    )
    extension = {
        "rt": int(record.time * 1000),
        "act": v.action,
        "cat": v.category,
        "cs1Label": "kind",
        "cs1": v.kind,
        "cs2Label": "requestId",
        "cs2": record.request_id,
        "cs3Label": "operation",
        "cs3": record.operation,
        "cs4Label": "tenant",
        "cs4": record.tenant or "",
        "cn1Label": "start",
        "cn1": v.start,
        "cn2Label": "end",
        "cn2": v.end,
    }
    return header + "|" + " ".join(f"{key}={_cef_value(value)}" for key, value in extension.items())


def check_sink_spec(spec: str) -> str:
    kind, _, target = spec.partition(":")
    if spec != "log" and (kind not in ("json", "cef") or not target):
        raise ValueError(f"guardrail sink {spec!r}: expected log, json:<file or ->, or cef:<file or ->")
    return spec


def open_sinks(specs: list[str]) -> list[Sink]:
    """The configured sinks (specs already checked); raises SinkError for a file that cannot be opened."""
    sinks: list[Sink] = []
    for spec in specs:
        kind, _, target = spec.partition(":")
        sinks.append(LogSink() if spec == "log" else LineSink(kind, target))
    return sinks


class VerdictExporter:
    """Fans each verdict out to the sinks and the metrics."""

    def __init__(self, sinks: list[Sink], stats: RequestStats) -> None:
        self._sinks = sinks
        self._stats = stats
        self._last_complaint: dict[str, float] = {}

    def export(self, verdicts: list[Verdict], *, request_id: str, operation: str, tenant: str | None) -> None:
        now = time.time()
        for verdict in verdicts:
            self._stats.count("guardrail_verdicts", operation, verdict.rule, verdict.action)
            record = VerdictRecord(verdict, request_id, operation, tenant, now)
            for sink in self._sinks:
                try:
                    sink.write(record)
                except Exception as exc:  # a sink must never break the stream
                    self._stats.count("guardrail_sink_failures", sink.name)
                    if now - self._last_complaint.get(sink.name, 0.0) >= 60:
                        self._last_complaint[sink.name] = now
                        log.warning("guardrail sink %s failed: %s", sink.name, exc)
