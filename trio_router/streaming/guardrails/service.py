"""One server's guardrails, as the server composes them beside the HTTP layer: the policy for
each operation's ``x-guardrails`` over the settings' policy, and where verdicts go.

The HTTP layer only carries this object (``ServerContext.guardrails``); streams and guarded
answers reach it through ``of(request)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...observability.metrics import RequestStats
from ...settings import Settings
from .evaluator import GuardrailPolicy
from .policy import operation_policy
from .sinks import VerdictExporter, open_sinks

if TYPE_CHECKING:
    from ...http.request import Request


class ServerGuardrails:
    __slots__ = ("_base", "_policies", "_sinks", "verdicts")

    def __init__(self, settings: Settings) -> None:
        self._base = settings.guardrails
        self._policies: dict[str, GuardrailPolicy | None] = {}
        self._sinks = open_sinks(settings.guardrail_sinks)  # before serving: a bad sink stops startup
        self.verdicts: VerdictExporter | None = None  # once serving: verdicts -> sinks and metrics

    def serve_with(self, stats: RequestStats) -> None:
        """Count verdicts in the serving server's metrics."""
        self.verdicts = VerdictExporter(self._sinks, stats)

    def policy(self, extension: object = None) -> GuardrailPolicy | None:
        """The compiled policy for an operation's ``x-guardrails`` over the settings' policy
        (None: no guardrails). Each distinct policy is compiled once per server."""
        return operation_policy(self._base, extension, self._policies)


def of(request: Request) -> ServerGuardrails | None:
    """The guardrails of the server serving ``request`` (None on a bare HTTP server)."""
    guardrails = request.server.guardrails
    return guardrails if isinstance(guardrails, ServerGuardrails) else None
