"""``--workers N``: a supervisor process and N worker processes.

Each worker binds its own SO_REUSEPORT socket, so the kernel spreads connections across
them with no shared accept lock. The supervisor holds a bound, never-listening socket in
the same reuseport group so the port stays reserved while a worker restarts. Workers run
in their own session: a terminal's Ctrl-C reaches the supervisor only, which forwards one
SIGTERM, so a worker never sees the "second signal" that would force it down.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile

import trio

from .http.server import ListenError, bind_listener
from .settings import Settings

log = logging.getLogger("trio_router.workers")

_MAX_BACKOFF = 10.0
_HEALTHY_RUN = 10.0  # a worker that lived this long restarts without backoff


def reserve_port(settings: Settings) -> tuple[socket.socket, int]:
    """Fail now, with one clear line, if the port is taken; then hold it for the workers."""
    probe = bind_listener(settings.host, settings.port, 1, reuse_port=False)
    port = probe.getsockname()[1]
    probe.close()
    reservation = socket.socket(probe.family, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reservation.bind((settings.host, port))
    except OSError as exc:
        reservation.close()
        raise ListenError(f"cannot listen on {settings.host}:{port}: {exc.strerror}") from None
    return reservation, port


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = False
        self.processes: dict[int, trio.Process] = {}
        self.exit_codes: dict[int, int] = {}

    def run(self) -> int:
        reservation, port = reserve_port(self.settings)
        # Workers share metric snapshots here, so any one of them can answer /metrics for all.
        metrics_dir = tempfile.mkdtemp(prefix="trio-router-metrics-")
        worker_settings = self.settings.model_copy(
            update={"port": port, "workers": 1, "reuse_port": True, "metrics_dir": metrics_dir}
        )
        log.info(
            "supervisor %d starting %d workers on %s:%d", os.getpid(), self.settings.workers, self.settings.host, port
        )
        try:
            trio.run(self._supervise, worker_settings.model_dump_json())
        finally:
            reservation.close()
            shutil.rmtree(metrics_dir, ignore_errors=True)
        failed = {worker: code for worker, code in self.exit_codes.items() if code != 0}
        if failed:
            log.warning("workers exited with errors: %s", failed)
        return 1 if failed else 0

    async def _supervise(self, settings_json: str) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._forward_signals)
            async with trio.open_nursery() as workers:
                for worker_id in range(self.settings.workers):
                    workers.start_soon(self._keep_running, worker_id, settings_json)
            nursery.cancel_scope.cancel()

    async def _keep_running(self, worker_id: int, settings_json: str) -> None:
        backoff = 0.5
        command = [sys.executable, "-m", "trio_router.workers", settings_json, str(worker_id)]
        while True:
            started = trio.current_time()
            process = await trio.lowlevel.open_process(command, start_new_session=True)
            self.processes[worker_id] = process
            if self.stopping:  # the signal came while this worker was starting: it missed the forward
                process.send_signal(signal.SIGTERM)
            code = await process.wait()
            del self.processes[worker_id]
            if self.stopping:
                self.exit_codes[worker_id] = code
                return
            log.error("worker %d (pid %d) exited with %d; restarting", worker_id, process.pid, code)
            if trio.current_time() - started >= _HEALTHY_RUN:
                backoff = 0.5
            await trio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            if self.stopping:
                return

    async def _forward_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if not self.stopping:
                    self.stopping = True
                    log.info(
                        "%s: draining %d workers (send it again to kill them)",
                        signal.Signals(signum).name,
                        len(self.processes),
                    )
                    for process in list(self.processes.values()):
                        process.send_signal(signal.SIGTERM)
                else:
                    for process in list(self.processes.values()):
                        process.kill()


def _worker_main(settings_json: str, worker_id: str) -> int:
    from .observability.logs import configure_logging
    from .runner import load_app, run_process

    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings, worker=worker_id)
    return run_process(load_app(settings), settings, watch_parent=True, worker_name=worker_id)


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1], sys.argv[2]))
