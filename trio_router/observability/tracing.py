"""W3C Trace Context: accept an inbound ``traceparent``, propagate it to upstream calls.

The server's own span gets a fresh span id; upstream calls made while handling the request
carry ``00-<trace id>-<that span id>-<flags>``, so a tracing backend links them to the
caller. A request without a valid ``traceparent`` starts a new trace.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    parent_id: str | None  # the caller's span, if the request carried one
    span_id: str  # this server's span
    flags: str

    @classmethod
    def from_header(cls, value: bytes | None) -> TraceContext:
        match = _TRACEPARENT.fullmatch(value.strip()) if value else None
        if match:
            trace_id, parent_id, flags = (group.decode() for group in match.groups())
            if trace_id != _ZERO_TRACE and parent_id != _ZERO_SPAN:
                return cls(trace_id, parent_id, _random_id(64), flags)
        return cls(_random_id(128), None, _random_id(64), "01")

    def outgoing(self) -> str:
        """The ``traceparent`` for a call this server makes on the request's behalf."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


def _random_id(bits: int) -> str:
    """A trace or span id: random, never all zeros (invalid in W3C Trace Context). Python's
    generator rather than the kernel's, as OpenTelemetry's SDK does: ids need to be unique,
    not secret, and ``os.urandom`` is a system call per id (three per request). The module's
    generator is reseeded in a forked worker."""
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"
