"""Where exported usage records go: a JSONL file, or a Redis stream for a consumer group.

A sink's failures are OSErrors (the exporter retries them). ``not_exported`` filters out
records the sink already holds, for a round whose outcome is unknown (a crash or an error
after the write may have landed)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Protocol

import coredis
import trio
from coredis.exceptions import RedisError

_TAIL_BYTES = 8 * 1024 * 1024  # a file sink looks this far back for records it already holds


class SinkError(OSError):
    pass


class Sink(Protocol):
    name: str

    async def __aenter__(self) -> Sink: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def export(self, lines: list[bytes]) -> None: ...

    async def not_exported(self, lines: list[bytes]) -> list[bytes]: ...


def _record_id(line: bytes) -> str | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value.get("record_id") if isinstance(value, dict) else None


class JsonlSink:
    """Appends to a file, one ``write`` per batch (O_APPEND: concurrent gateways do not interleave
    inside a batch on a local file system)."""

    name = "jsonl"

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    async def __aenter__(self) -> JsonlSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def export(self, lines: list[bytes]) -> None:
        await trio.to_thread.run_sync(self._append, b"".join(line + b"\n" for line in lines))

    def _append(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise SinkError(f"short write to {self.path} ({written} of {len(data)} bytes)")
        finally:
            os.close(fd)

    async def not_exported(self, lines: list[bytes]) -> list[bytes]:
        held = await trio.to_thread.run_sync(self._tail_ids)
        return [line for line in lines if _record_id(line) not in held]

    def _tail_ids(self) -> set[str | None]:
        try:
            with self.path.open("rb") as file:
                file.seek(max(0, file.seek(0, os.SEEK_END) - _TAIL_BYTES))
                return {_record_id(line) for line in file.read().splitlines()} - {None}
        except FileNotFoundError:
            return set()


# KEYS: the stream, the sorted set of exported record ids (score: when). ARGV: now, keep
# seconds, then one record per argument. A record already in the set is skipped.
_XADD_NEW = """
local now, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - keep)
local added = 0
for i = 3, #ARGV do
  local id = cjson.decode(ARGV[i])['record_id']
  if redis.call('ZADD', KEYS[2], 'NX', now, id) == 1 then
    redis.call('XADD', KEYS[1], '*', 'record', ARGV[i])
    added = added + 1
  end
end
return added
"""


class RedisStreamSink:
    """``XADD <stream> * record <json>`` for each record, atomically with its id's bookkeeping:
    a record is added once however often it is exported. Keys share the ``{<stream>}`` hash tag."""

    name = "redis"
    KEEP_IDS = 7 * 86400  # how long an exported id is remembered

    def __init__(self, url: str, stream: str, timeout: float = 5.0) -> None:
        self.url = url
        self.stream_key = "{" + stream + "}"
        self.ids_key = self.stream_key + ":exported"
        self.timeout = timeout
        self.client: Any = coredis.Redis.from_url(url, decode_responses=True)
        self._script = self.client.register_script(_XADD_NEW)

    async def __aenter__(self) -> RedisStreamSink:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    async def export(self, lines: list[bytes]) -> None:
        records = [line.decode() for line in lines]
        try:
            with trio.fail_after(self.timeout):
                await self._script(
                    keys=[self.stream_key, self.ids_key], args=[int(time.time()), self.KEEP_IDS, *records]
                )
        except (RedisError, trio.TooSlowError) as exc:
            raise SinkError(f"redis at {self.url}: {type(exc).__name__}: {exc}") from None

    async def not_exported(self, lines: list[bytes]) -> list[bytes]:
        return lines  # export itself skips what the stream holds
