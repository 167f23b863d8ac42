"""The request being handled, for code the handler calls (the HTTP client's trace propagation)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

# Typed Any: the runtime sits below the HTTP layer that defines Request.
current_request: ContextVar[Any] = ContextVar("trio_router_current_request", default=None)
