"""One access-log line per request, with a ceiling on lines per second.

Above ``max_per_second`` successful requests are counted rather than logged, and one line a
second says how many were left out; server errors (5xx) are always logged. A busy server
thus pays for at most that many formatted lines, whatever its request rate.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from .metrics import UNMATCHED


class AccessLog:
    def __init__(self, max_per_second: int) -> None:
        self.max_per_second = max_per_second
        self._log = structlog.get_logger("trio_router.access")
        self._second = 0
        self._logged = 0
        self.suppressed = 0

    def record(self, request: Any, *, method: str, status: int, seconds: float, size: int | None, client: str) -> None:
        """``request`` is the parsed request, or None when the head did not parse. Its id and
        trace are read only for lines actually logged (both are computed lazily)."""
        second = int(time.monotonic())
        if second != self._second:
            if self.suppressed:
                self._log.info("access log sampled", suppressed=self.suppressed, max_per_second=self.max_per_second)
            self._second, self._logged, self.suppressed = second, 0, 0
        if status < 500 and self._logged >= self.max_per_second:
            self.suppressed += 1
            return
        self._logged += 1
        self._log.info(
            "request",
            method=method,
            operation=request.operation if request is not None else UNMATCHED,
            route=request.route if request is not None else UNMATCHED,
            status=status,
            duration_ms=round(seconds * 1000, 3),
            bytes=size,
            request_id=request.id if request is not None else None,
            client=client,
            trace_id=request.trace.trace_id if request is not None else None,
            tenant=request.tenant if request is not None else None,
        )
