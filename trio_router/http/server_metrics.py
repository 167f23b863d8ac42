"""The server's /metrics: live gauges read from its state, counters from every worker."""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from ..observability.metrics import CONTENT_TYPE, Gauges, RequestStats, SharedSnapshots, render
from ..runtime.memory import traced_bytes_per_suspended_handler
from .context import ServerContext
from .phases import Phase
from .response import Response

log = logging.getLogger("trio_router.metrics")

_BUSY = frozenset({Phase.HANDLER, Phase.BODY, Phase.SEND})
SHARE_INTERVAL = 1.0  # seconds between a worker's snapshots


class ServerMetrics:
    def __init__(self, context: ServerContext, worker_name: str | None) -> None:
        self.context = context
        directory = context.settings.metrics_dir
        self.snapshots = SharedSnapshots(Path(directory), worker_name or "0") if directory else None
        self.suspended_handler_bytes = 0.0
        self._measuring = False

    def gauges(self) -> Gauges:
        context = self.context
        runtime = context.runtime
        return Gauges(
            open_connections=len(context.connections),
            in_flight=sum(1 for connection in context.connections if connection.phase in _BUSY),
            handlers_active=runtime.pool.active,
            handlers_suspended=runtime.pool.suspended,
            handlers_pooled=runtime.pool.pooled,
            handlers_queued=runtime.admission.waiting,
            shed_requests=runtime.admission.shed,
            suspended_handler_bytes=self.suspended_handler_bytes,
        )

    def response(self) -> Response:
        self._measure_handler_memory_once()
        stats, gauges = self.context.stats, self.gauges()
        if self.snapshots is not None:
            own, stats = stats, RequestStats()
            stats.merge(own)
            for other_stats, other_gauges in self.snapshots.read_others():
                stats.merge(other_stats)
                gauges.merge(other_gauges)
        return Response(render(stats, gauges), headers=[("content-type", CONTENT_TYPE)])

    async def run(self) -> None:
        """Share snapshots with the other workers, if there are any."""
        while self.snapshots is not None:
            self.share()
            await trio.sleep(SHARE_INTERVAL)

    def _measure_handler_memory_once(self) -> None:
        """On the first scrape: a subprocess measures a suspended handler (reported from the next)."""
        if not self._measuring:
            self._measuring = True
            self.context.spawn_helper(self._measure_handler_memory)

    async def _measure_handler_memory(self) -> None:
        try:
            self.suspended_handler_bytes = await traced_bytes_per_suspended_handler()
        except Exception:  # a diagnostic must never stop the server
            log.exception("could not measure suspended handler memory")

    def share(self) -> None:
        if self.snapshots is not None:
            try:
                self.snapshots.write(self.context.stats, self.gauges())
            except OSError as exc:
                log.warning("cannot write the metrics snapshot: %s", exc)
