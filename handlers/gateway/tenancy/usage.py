"""Usage records: one per request (and one per attempt of it that reached a backend without giving
the answer), spooled to disk at once, exported in the background.

``UsageLog.write`` appends the record to this process's spool file (one ``write`` of one
line: a killed process loses nothing the kernel has, ``usage.fsync`` adds power loss). The
exporter sends what the spool holds past its exported offset to the sink every
``flush_interval``, then records the new offset; while the sink fails it retries with
exponential backoff up to ``max_backoff``. Each spool is held under an exclusive ``flock``: the
spool of a process that died (even by SIGKILL) is unlocked, so the next exporter to look adopts
it, exports the rest and deletes it. Records carry a unique ``record_id``: the Redis sink
skips ids it has stored, the file sink checks its tail when a round's outcome was unknown, so a
crash between export and offset never duplicates a record. Schema: specs/usage-record.schema.json.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

import trio

from trio_router import App

from .config import UsageConfig
from .cost import Tokens
from .usage_sinks import Sink

log = logging.getLogger("handlers.gateway.usage")
_ROTATE_BYTES = 16 * 1024 * 1024
_BATCH_BYTES = 1024 * 1024


def usage_record(*, tokens: Tokens, started_at: float, degraded: list[str], **fields: Any) -> dict[str, Any]:
    fields["latency_ms"] = round(fields["latency_ms"], 3)
    return {
        "record_id": _RECORD_IDS.next(),
        **fields,
        "tokens_in": tokens.input,
        "tokens_out": tokens.output,
        "degraded": list(degraded),
        "started_at": _TIMESTAMPS.iso(started_at),
        "finished_at": _TIMESTAMPS.iso(time.time()),
    }


class _RecordIds:
    """Unique ids without a system call each (uuid4 reads the kernel's random source): 64
    random bits per process, then a counter. A forked child draws its own random half."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class _Timestamps:
    """RFC 3339 UTC with milliseconds; the part down to the second is formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, seconds: float) -> str:
        whole = int(seconds)
        micro = round((seconds - whole) * 1e6)  # rounded to microseconds first, as datetime does
        if micro >= 1_000_000:
            whole, micro = whole + 1, micro - 1_000_000
        if whole != self._second:
            self._second, self._prefix = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        return f"{self._prefix}.{micro // 1000:03d}Z"


_RECORD_IDS = _RecordIds()
_TIMESTAMPS = _Timestamps()


class _Spool:
    """One spool file, locked by its owner, with the offset of what has been exported."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.offset_path = path.with_suffix(".offset")
        try:
            self.offset = int(self.offset_path.read_text() or 0)
        except (OSError, ValueError):
            self.offset = 0
        self.uncertain = False  # the last export's outcome is unknown: check the sink first

    @classmethod
    def lock(cls, path: Path, create: bool = False) -> _Spool | None:
        """The spool at ``path`` if this process can lock it (None: its owner is alive)."""
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if not path.exists():  # deleted by the exporter that held it just before
            os.close(fd)
            return None
        return cls(path, fd)

    def pending(self) -> tuple[bytes, int]:
        """Complete lines past the offset (up to about a batch), and the offset after them."""
        data = os.pread(self.fd, _BATCH_BYTES, self.offset)
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) == _BATCH_BYTES:  # one line longer than a batch
            data = os.pread(self.fd, os.fstat(self.fd).st_size - self.offset, self.offset)
            end = data.rfind(b"\n") + 1
        return data[:end], self.offset + end

    def commit(self, offset: int) -> None:
        self.offset = offset
        temporary = self.offset_path.with_suffix(".offset.tmp")
        temporary.write_text(str(offset))
        temporary.replace(self.offset_path)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def remove(self) -> None:
        """Delete the spool (fully exported) while still holding its lock."""
        self.offset_path.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


class UsageLog:
    def __init__(self, app: App, config: UsageConfig, sink: Sink) -> None:
        self.app = app
        self.config = config
        self.sink = sink
        self.directory = Path(config.spool_dir)
        self._own: _Spool | None = None
        app.counter("gateway_usage_records", "Usage records written to the spool.", ())
        app.counter("gateway_usage_spool_failures", "Usage records the spool could not take (logged in full).", ())
        app.counter(
            "gateway_usage_export_failures", "Usage exports that failed and will be retried, by sink.", ("sink",)
        )

    def write(self, record: dict[str, Any]) -> None:
        """Spool one record. A spool that cannot be written (disk full) loses the record, loudly
        (error log with the record, metric), rather than failing a request already answered."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            spool = self._own or self._open_own()
            os.write(spool.fd, line)
            if self.config.fsync:
                os.fsync(spool.fd)
        except OSError as exc:
            self.app.count("gateway_usage_spool_failures")
            log.error("usage record not spooled (%s): %s", exc, line.decode().rstrip())
            return
        self.app.count("gateway_usage_records")

    def _open_own(self) -> _Spool:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"spool-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        spool = _Spool.lock(self.directory / name, create=True)
        assert spool is not None  # a new, unique name
        self._own = spool
        return spool

    async def run(self) -> None:
        """Export forever (a background task); on shutdown, one last round."""
        async with self.sink:
            backoff = self.config.flush_interval
            try:
                while True:
                    try:
                        await self.export_round()
                        backoff = self.config.flush_interval
                    except OSError as exc:
                        self.app.count("gateway_usage_export_failures", self.sink.name)
                        log.warning("usage export to %s failed (%s); retrying in %.1f s", self.sink.name, exc, backoff)
                        await trio.sleep(backoff)
                        backoff = min(backoff * 2, self.config.max_backoff)
                        continue
                    await trio.sleep(self.config.flush_interval)
            finally:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 5):
                    try:
                        await self.export_round()
                    except OSError as exc:
                        log.warning("usage left in the spool at shutdown (%s); the next start exports it", exc)
                    else:
                        self._remove_own_if_exported()

    def _remove_own_if_exported(self) -> None:
        if self._own is not None and self._own.offset == self._own.size():
            self._own.remove()
            self._own = None

    async def export_round(self) -> None:
        """Export this process's spool, then any spool whose owner is gone."""
        if self._own is not None:
            await self._drain(self._own)
            if self._own.offset == self._own.size() and self._own.offset > _ROTATE_BYTES:
                self._own.remove()
                self._own = None
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("spool-*.jsonl")):
            if self._own is not None and path == self._own.path:
                continue
            orphan = _Spool.lock(path)
            if orphan is None:
                continue
            orphan.uncertain = True  # its owner may have died between export and offset
            try:
                await self._drain(orphan)
            except BaseException:
                os.close(orphan.fd)
                raise
            log.info("exported the spool of a stopped gateway: %s", path.name)
            orphan.remove()

    async def _drain(self, spool: _Spool) -> None:
        while True:
            data, end = spool.pending()
            if not data:
                return
            lines = data.splitlines()
            if spool.uncertain:
                lines = await self.sink.not_exported(lines)
            spool.uncertain = True
            if lines:
                await self.sink.export(lines)
            spool.uncertain = False
            spool.commit(end)
