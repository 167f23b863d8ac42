"""Structured logs with structlog: JSON when stderr is not a terminal, readable on one.

Everything goes through the standard library's logging (so libraries' records are rendered
the same way) with structlog's processors: level, ISO time, the process's worker name, the
request id and tenant of the request being served (for lines logged while serving one), and
redaction of secrets by field name, whatever logged them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal

import structlog

from ..runtime.current import current_request
from ..settings import Settings
from ..streaming.guardrails.evaluator import check_whole
from ..streaming.guardrails.policy import GuardrailConfig, compile_policy
from ..streaming.guardrails.rules import PII_KINDS, Action

REDACTED = "[REDACTED]"
# Never logged in clear, whoever passes them: credentials and what identifies a session.
ALWAYS_REDACTED = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "api_key", "x-api-key"})


class Redactor:
    """A structlog processor replacing the values of secret fields, at any depth of dicts."""

    def __init__(self, extra_fields: Iterable[str] = ()) -> None:
        self.fields = ALWAYS_REDACTED | {name.lower() for name in extra_fields}

    def __call__(self, logger: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        return self._scrub(event)

    def _scrub(self, mapping: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in mapping.items():
            if str(key).lower() in self.fields:
                mapping[key] = REDACTED
            elif isinstance(value, dict):
                self._scrub(value)
        return mapping


class PiiScrubber:
    """A structlog processor that runs the guardrails' PII scanner (emails, SSNs, card and phone
    numbers; not IP addresses, which logs need) over every string a log line carries, its
    message and formatted traceback included, so PII a handler logs is never written in clear.
    Fields the server itself fills with identifiers are left alone."""

    _OWN_FIELDS = frozenset(
        {"timestamp", "level", "logger", "worker", "request_id", "trace_id", "client", "route", "tenant"}
    )

    def __init__(self) -> None:
        scrubbed = ("email", "ssn", "credit_card", "phone")
        pii: dict[str, Action | Literal["off"]] = {kind: "redact" if kind in scrubbed else "off" for kind in PII_KINDS}
        policy = compile_policy(GuardrailConfig(blocked=[], pii=pii))
        assert policy is not None
        self._policy = policy

    def __call__(self, logger: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if key not in self._OWN_FIELDS:
                event[key] = self._scrub(value)
        return event

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return check_whole(self._policy, value).text if _MAYBE_PII.search(value) else value
        if isinstance(value, dict):
            return {key: self._scrub(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(item) for item in value]
        return value


_MAYBE_PII = re.compile(r"[@0-9]")  # every kind scrubbed has an @ or a digit: skip the rest cheaply


def configure_logging(settings: Settings, worker: str | None = None) -> None:
    """Logging for this process from the settings (``worker`` names a worker process)."""
    fmt, level = settings.log_format, settings.log_level
    redact = [name.strip() for name in settings.log_redact.split(",") if name.strip()]
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if worker is not None:
        shared.append(_add_worker(worker))
    shared.append(add_request_context)
    shared.append(Redactor(redact))
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                *([PiiScrubber()] if settings.log_redact_pii else []),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request it sends at INFO: one line per upstream call is the access log's
    # job on the upstream's side, and rendering it costs a gateway a measurable share of its time.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)


def add_request_context(logger: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The request id and tenant (``request.tenant``, set by the app) of the request this line
    was logged while serving, so a handler's or a library's lines can be joined to it."""
    request = current_request.get()
    if request is not None:
        event.setdefault("request_id", request.id)
        if request.tenant is not None:
            event.setdefault("tenant", request.tenant)
    return event


def _add_worker(worker: str) -> Any:
    def add(logger: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("worker", worker)
        return event

    return add
