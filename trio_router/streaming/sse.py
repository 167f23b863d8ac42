"""Server-sent events (the WHATWG HTML "text/event-stream" format), sans-IO: encoding events,
and parsing a stream of them back (a gateway relaying an upstream's stream)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
KEEPALIVE = b": keep-alive\n\n"


@dataclass(frozen=True, slots=True)
class Event:
    """One event. ``data`` that is not text is sent as JSON; ``retry`` is in milliseconds."""

    data: Any
    event: str | None = None
    id: str | None = None
    retry: int | None = None


def _field(name: str, value: str) -> str:
    if _LINE_BREAK.search(value) or "\0" in value:
        raise ValueError(f"an SSE {name} cannot contain a line break or NUL: {value!r}")
    return f"{name}: {value}\n"


def encode(item: Event | str) -> bytes:
    """The bytes of one event: multi-line data becomes one ``data:`` line per line, so a client
    reassembles it exactly; names and ids that would break the framing are refused."""
    if isinstance(item, str):
        item = Event(item)
    data = item.data if isinstance(item.data, str) else json.dumps(item.data, separators=(",", ":"))
    out = []
    if item.id is not None:
        out.append(_field("id", item.id))
    if item.event is not None:
        out.append(_field("event", item.event))
    if item.retry is not None:
        out.append(f"retry: {int(item.retry)}\n")
    out.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    out.append("\n")
    return "".join(out).encode()


class EventTooLarge(ValueError):
    """An event's data grew past the parser's bound before the blank line that ends it."""


class EventParser:
    """Events from the lines of a text/event-stream (line breaks already split off), by the
    WHATWG parsing rules: ``data`` lines joined with newlines, comments ignored, an event
    dispatched at each blank line (none if it had no data). An event whose data exceeds
    ``max_event`` characters raises ``EventTooLarge``: a peer that never sends the blank line
    cannot make the parser hold an unbounded event."""

    def __init__(self, max_event: int | None = None) -> None:
        self._data: list[str] = []
        self._size = 0
        self._max_event = max_event
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def line(self, line: str) -> Event | None:
        if not line:
            event = Event("\n".join(self._data), self._event, self._id, self._retry) if self._data else None
            self._data, self._event, self._id, self._retry = [], None, None, None
            self._size = 0
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._max_event is not None and self._size > self._max_event:
                raise EventTooLarge(f"an event's data is over {self._max_event} characters")
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


def terminal(reason: str, **details: Any) -> bytes:
    """The last event of a stream the server ends early: ``event: error`` with a JSON reason."""
    return encode(Event({"error": reason, **details}, event="error"))
