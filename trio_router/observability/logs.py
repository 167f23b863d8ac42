"""Structured logs with structlog: JSON when stderr is not a terminal, readable on one.

Everything goes through the standard library's logging (so libraries' records are rendered
the same way) with structlog's processors: level, ISO time, the process's worker name, and
redaction of secrets by field name, whatever logged them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

from ..settings import Settings

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
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _add_worker(worker: str) -> Any:
    def add(logger: object, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("worker", worker)
        return event

    return add
