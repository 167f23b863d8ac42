"""A metered stream: what it carried (the backend's usage chunk, or its text counted), and the
cost summary chunk before ``data: [DONE]``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

from trio_router import Event

from .cost import CHARS_PER_TOKEN, Tokens, from_usage


class Tally:
    """What a stream carried: its ``usage`` chunk if the backend sent one, else counted text."""

    def __init__(self, estimate: Tokens) -> None:
        self.estimate = estimate
        self.chars = 0
        self.reported: Tokens | None = None
        self.template: dict[str, Any] | None = None

    def observe(self, data: str) -> None:
        try:
            chunk = json.loads(data)
        except ValueError:
            self.chars += len(data)
            return
        if not isinstance(chunk, dict):
            return
        self.template = chunk
        reported = from_usage(chunk.get("usage"))
        if reported is not None:
            self.reported = reported
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict):
                delta = choice.get("delta")
                text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
                if isinstance(text, str):
                    self.chars += len(text)

    def restart(self, estimate: Tokens) -> None:
        """Count afresh from here (a continuation's part of the stream), its prompt ``estimate``."""
        self.estimate, self.chars, self.reported = estimate, 0, None

    def tokens(self) -> Tokens:
        if self.reported is not None:
            return self.reported
        return Tokens(self.estimate.input, math.ceil(self.chars / CHARS_PER_TOKEN))


def counted(source: Any, tally: Tally, summary: Callable[[Tally], dict[str, Any]]) -> Iterator[Event | str]:
    """The stream's events as they come, counted; the cost summary chunk before ``[DONE]``.
    Closing this closes the source (the upstream request)."""
    try:
        for item in source:
            data = item.data if isinstance(item, Event) else item
            if data == "[DONE]":
                head = {key: value for key, value in (tally.template or {}).items() if key not in ("choices", "usage")}
                yield Event({**head, "choices": [], "router": summary(tally)})
            elif isinstance(data, str):
                tally.observe(data)
            yield item
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
