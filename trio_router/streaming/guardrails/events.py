"""Guardrails applied to a stream of server-sent events, sans-IO.

Three shapes of event data are understood:

- **OpenAI-style chunks** (a JSON object with ``choices``, as a dict or as JSON text): each
  choice's ``delta.content`` (chat) or ``text`` (completions) is one text stream with its own
  evaluator; the chunk is rewritten in place, so it stays valid JSON in the same shape. At
  ``data: [DONE]`` held text goes out in a final chunk, then a summary chunk (``choices: []``
  and a ``guardrails`` object, like OpenAI's usage chunk), then ``[DONE]``. A truncation ends
  the stream with a ``finish_reason: "content_filter"`` chunk and ``[DONE]``.
- **Plain text** (string data): the events' data is one text stream.
- **Any other JSON value**: each string in it is checked on its own, as a whole.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..sse import Event
from .evaluator import GuardrailPolicy, Step, StreamGuard, Verdict, check_whole

DONE = "[DONE]"
# What a chunk the guardrails make copies from the last one seen: who it is, not what it says
# (no choices, usage, nor another layer's summary).
_IDENTITY = ("id", "object", "created", "model", "system_fingerprint")


class GuardedEvents:
    """One event stream's guardrails: events in, the events to send out."""

    def __init__(self, policy: GuardrailPolicy, *, deadline: float = math.inf) -> None:
        self._policy = policy
        self._deadline = deadline
        self._text: StreamGuard | None = None
        self._choices: dict[int, StreamGuard] = {}
        self._template: dict[str, Any] | None = None  # the last OpenAI chunk, for chunks we add
        self._chat = True  # delta.content (chat) rather than text (completions)
        self._carried_id: str | None = None  # an id whose event was held back entirely
        self.verdicts: list[Verdict] = []  # not yet exported
        self.severed: Verdict | None = None
        self.counts = {"redact": 0, "flag": 0, "truncate": 0}

    # -- the I/O layer's calls ------------------------------------------------------------

    def process(self, item: Event | str, now: float) -> list[Event]:
        if self.severed is not None:
            return []
        event = item if isinstance(item, Event) else Event(item)
        data = event.data
        if data == DONE:
            return [*self._end(), event]
        chunk = _openai_chunk(data)
        if chunk is not None:
            return self._openai(chunk, isinstance(data, str), event, now)
        if isinstance(data, str):
            return self._plain(event, self._text_guard().feed(data, now))
        return self._whole(event)

    @property
    def forced_flushes(self) -> int:
        return sum(guard.forced_flushes for guard in self._guards())

    def flush_due(self) -> float | None:
        dues = [due for guard in self._guards() if (due := guard.flush_due()) is not None]
        return min(dues) if dues else None

    def flush(self, now: float) -> list[Event]:
        """Held text that has waited long enough, out now."""
        out = self._release({index: guard.flush() for index, guard in self._choices.items() if guard.held})
        if self._text is not None and self._text.held:
            out += self._plain(Event(""), self._text.flush())
        return out

    def finish(self) -> list[Event]:
        """The source ended (without ``[DONE]``): whatever is held goes out."""
        return [] if self.severed is not None else self._end(summary=False)

    def terminal(self) -> list[Event]:
        """What ends a severed stream: for OpenAI streams a content_filter chunk and [DONE]."""
        assert self.severed is not None
        reason = {"rule": self.severed.rule, "kind": self.severed.kind, "action": self.severed.action}
        if self._template is None:
            return [Event({"error": "guardrail", **reason}, event="error")]
        index = next(iter(self._choices), 0)
        stop = self._chunk({index: ""}, finish_reason="content_filter")
        stop["guardrails"] = {"severed": reason}
        return [Event(stop), Event(DONE)]

    def take_verdicts(self) -> list[Verdict]:
        verdicts, self.verdicts = self.verdicts, []
        return verdicts

    # -- shapes ---------------------------------------------------------------------------

    def _openai(self, chunk: dict[str, Any], as_text: bool, event: Event, now: float) -> list[Event]:
        self._template = chunk
        kept = []
        for choice in chunk["choices"]:
            if not isinstance(choice, dict):
                kept.append(choice)
                continue
            index = choice.get("index", 0) if isinstance(choice.get("index", 0), int) else 0
            holder, key = _content_slot(choice)
            if holder is None:
                kept.append(choice)
                continue
            self._chat = key == "content"
            guard = self._choices.get(index) or self._choices.setdefault(index, self._new_guard())
            text = holder.get(key)
            released = self._note(guard.feed(text if isinstance(text, str) else "", now))
            if self.severed is None and choice.get("finish_reason") is not None:
                released += self._note(guard.finish())  # this choice is complete: nothing stays held
            if self.severed is not None:
                choice["finish_reason"] = None  # the terminal chunk says content_filter
            if isinstance(text, str) or released:
                holder[key] = released
            kept.append(choice)
            if self.severed is not None:
                break
        chunk["choices"] = kept
        data = json.dumps(chunk, separators=(",", ":")) if as_text else chunk
        return [Event(data, event=event.event, id=event.id, retry=event.retry)]

    def _plain(self, event: Event, step: Step) -> list[Event]:
        self._note(step)
        event_id = event.id or self._carried_id
        if not step.text:
            self._carried_id = event_id
            return []
        self._carried_id = None
        return [Event(step.text, event=event.event, id=event_id, retry=event.retry)]

    def _whole(self, event: Event) -> list[Event]:
        checked = self._strings(event.data)  # builds new containers: the handler's value is left alone
        return [] if self.severed is not None else [Event(checked, event=event.event, id=event.id, retry=event.retry)]

    def _strings(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._note(check_whole(self._policy, value))
        if isinstance(value, dict):
            return {key: self._strings(item) for key, item in value.items() if self.severed is None}
        if isinstance(value, list):
            return [self._strings(item) for item in value if self.severed is None]
        return value

    # -- helpers --------------------------------------------------------------------------

    def _end(self, *, summary: bool = True) -> list[Event]:
        out = self._release({index: guard.finish() for index, guard in self._choices.items()})
        if self._text is not None:
            out += self._plain(Event(""), self._text.finish())
        if summary and self._template is not None and self.severed is None:
            report = self._chunk({})
            report["guardrails"] = {**self.counts, "forced_flushes": self.forced_flushes}
            out.append(Event(report))
        return out

    def _release(self, steps: dict[int, Step]) -> list[Event]:
        texts = {index: self._note(step) for index, step in steps.items()}
        texts = {index: text for index, text in texts.items() if text}
        if not texts or self._template is None:
            return []
        return [Event(self._chunk(texts))]

    def _chunk(self, texts: dict[int, str], finish_reason: str | None = None) -> dict[str, Any]:
        """A chunk like the last one seen, carrying ``texts`` per choice index."""
        assert self._template is not None
        chunk = {key: self._template[key] for key in _IDENTITY if key in self._template}
        if self._chat:
            choices = [{"index": i, "delta": {"content": t}, "finish_reason": finish_reason} for i, t in texts.items()]
        else:
            choices = [{"index": i, "text": t, "finish_reason": finish_reason} for i, t in texts.items()]
        chunk["choices"] = choices
        return chunk

    def _note(self, step: Step) -> str:
        """Record a step's verdicts and severing; the text it released (before the match, if it severed)."""
        for verdict in step.verdicts:
            self.verdicts.append(verdict)
            self.counts[verdict.action] += 1
        if step.severed is not None:
            self.severed = step.severed
        return step.text

    def _new_guard(self) -> StreamGuard:
        return StreamGuard(self._policy, deadline=self._deadline)

    def _text_guard(self) -> StreamGuard:
        if self._text is None:
            self._text = self._new_guard()
        return self._text

    def _guards(self) -> list[StreamGuard]:
        return [*self._choices.values(), *([self._text] if self._text is not None else [])]


def _openai_chunk(data: object) -> dict[str, Any] | None:
    """The chunk as a dict we may rewrite (a copy: the handler's object is left alone), or None."""
    if isinstance(data, str):
        if not data.startswith("{"):
            return None
        try:
            parsed = json.loads(data)
        except ValueError:
            return None
    else:
        parsed = data
    if isinstance(parsed, dict) and isinstance(parsed.get("choices"), list):
        if isinstance(data, str):
            return parsed
        # Rewritten below: copy what is rewritten (the chunk, its choices, their deltas), not the rest.
        choices = [dict(c, delta=dict(c["delta"])) if isinstance(c.get("delta"), dict) else dict(c)
                   for c in parsed["choices"] if isinstance(c, dict)]  # fmt: skip
        return {**parsed, "choices": choices}
    return None


def _content_slot(choice: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Where a choice's text is: ``delta.content`` (chat) or ``text`` (completions)."""
    delta = choice.get("delta")
    if isinstance(delta, dict):
        return delta, "content"
    if "text" in choice:
        return choice, "text"
    return None, ""
