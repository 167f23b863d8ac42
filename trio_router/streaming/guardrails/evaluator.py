"""The streaming guardrail evaluator, sans-IO: text chunks in, decided text and verdicts out.

``StreamGuard.feed(chunk, now)`` appends a chunk and returns what can be forwarded: everything
up to the earliest point where some rule's match might still be in progress (see ``rules``),
with matches redacted, flagged or, for ``truncate``, the stream severed right before the match.
Because text is released only once no later chunk can change how it is treated, the output is
the same however the text was split into chunks (a hypothesis property in the tests).

Held text never waits without bound: it is forced out (decided as if the stream ended there)
once ``window_tokens`` chunks arrived while one pending match was held (counted from where
the held text begins: in prose the last word is nearly always held, each word a new pending
match, so counting per unbroken hold would force a flush every ``window_tokens`` chunks and
decide a card number cut by it as two harmless halves), once text was held ``max_hold``
seconds, or ``deadline_margin`` before the stream's deadline. ``flush_due()`` tells the I/O
layer when. Only a forced flush can treat a split text differently from an unsplit one; it is
the price of bounded latency, and every forced flush is counted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .rules import Action, Category, Hold, Rule, Trigger, merge_holds

_CONTEXT = 8  # released characters kept for lookbehinds at the next scan


@dataclass(frozen=True, slots=True)
class Verdict:
    """One decision; offsets count characters of the stream's original text. Never the matched text."""

    rule: str
    category: Category
    kind: str
    action: Action
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Limits:
    window_tokens: int = 64  # chunks that may arrive while one pending match is held
    max_hold: float = 1.0  # seconds text may be held
    deadline_margin: float = 0.25  # seconds before the deadline when everything held goes out


@dataclass(frozen=True, slots=True)
class GuardrailPolicy:
    """A compiled policy: rules in evaluation order, their merged holds, the hold limits."""

    rules: tuple[Rule, ...]
    limits: Limits
    holds: tuple[Hold, ...] = ()
    tool_arguments: bool = False  # a buffered answer's tool-call arguments are checked too (answers.py)

    def __post_init__(self) -> None:
        if not self.holds:
            object.__setattr__(self, "holds", merge_holds(rule.hold for rule in self.rules))


@dataclass(slots=True)
class Step:
    """What one call decided: text to forward, the verdicts behind it, and the verdict that severed
    the stream (after which nothing more is ever forwarded)."""

    text: str = ""
    verdicts: list[Verdict] = field(default_factory=list)
    severed: Verdict | None = None


_WHOLE = Limits(window_tokens=2**31, max_hold=math.inf, deadline_margin=0)


def check_whole(
    policy: GuardrailPolicy, text: str, *, slice_chars: int = 2**62, pause: Callable[[], None] | None = None
) -> Step:
    """A complete text (a JSON string value, a log line), nothing held: fed in slices of
    ``slice_chars`` (the same verdicts as at once, by the chunking invariance) with ``pause()``
    between them, so that the caller can let other work run during a long text."""
    guard = StreamGuard(policy, _WHOLE)
    if len(text) <= slice_chars:  # the common case: one pass over a text that is all there is
        return guard.finish(text)
    step = Step()
    last = (len(text) - 1) // slice_chars * slice_chars
    for start in range(0, last, slice_chars):
        if start and pause is not None:
            pause()
        part = guard.feed(text[start : start + slice_chars], 0.0)
        step.text += part.text
        step.verdicts += part.verdicts
        if part.severed is not None:
            step.severed = part.severed
            return step
    if pause is not None:
        pause()
    rest = guard.finish(text[last:])
    step.text += rest.text
    step.verdicts += rest.verdicts
    step.severed = rest.severed
    return step


class StreamGuard:
    """One text stream's evaluator (a chat completion's choice, an SSE stream of text events)."""

    def __init__(self, policy: GuardrailPolicy, limits: Limits | None = None, *, deadline: float = math.inf) -> None:
        self._rules = policy.rules
        self._holds = policy.holds
        self._limits = limits or policy.limits
        self._deadline = deadline
        self._text = ""  # a few released characters (context), then the held ones
        self._scan = 0  # where held text begins in _text
        self._offset = 0  # stream offset of _text[0]
        self._held_since: float | None = None
        self._held_chunks = 0  # chunks since the held text began where it begins now
        self._held_from = -1  # the stream offset where the held text begins
        self.severed: Verdict | None = None
        self.forced_flushes = 0

    @property
    def held(self) -> str:
        return self._text[self._scan :]

    def flush_due(self) -> float | None:
        """When the held text must be forced out (None: nothing is held)."""
        if self._held_since is None:
            return None
        return min(self._held_since + self._limits.max_hold, self._deadline - self._limits.deadline_margin)

    def feed(self, chunk: str, now: float) -> Step:
        if self.severed is not None:
            return Step(severed=self.severed)
        self._text += chunk
        if self._held_since is not None:
            self._held_chunks += 1
        due = self.flush_due()
        forced = self._held_chunks >= self._limits.window_tokens or (due is not None and now >= due)
        if forced:
            self.forced_flushes += 1
        step = self._decide(final=forced or now >= self._deadline - self._limits.deadline_margin)
        if self._scan == len(self._text):
            self._held_since, self._held_chunks = None, 0
            return step
        if self._held_since is None:
            self._held_since = now
        held_from = self._offset + self._scan
        if held_from != self._held_from:  # what was pending is decided: a new pending match
            self._held_from, self._held_chunks = held_from, 0
        return step

    def flush(self) -> Step:
        """Force the held text out now (the I/O layer calls this at ``flush_due()``)."""
        if self.severed is not None:
            return Step(severed=self.severed)
        if self._held_since is not None:
            self.forced_flushes += 1
        return self.finish()

    def finish(self, last: str = "") -> Step:
        """The stream ended (``last``: its final text, decided with the rest in one pass): every
        match is complete, nothing is held."""
        if self.severed is not None:
            return Step(severed=self.severed)
        self._text += last
        self._held_since, self._held_chunks = None, 0
        return self._decide(final=True)

    def _decide(self, *, final: bool) -> Step:
        text, position = self._text, self._scan
        hold = len(text) if final else self._hold_point(text, position)
        active = self._active(text, position) if position < hold else ()
        if not active:  # the common case: nothing in this text can match
            self._keep(text, hold)
            return Step(text[position:hold])
        step = Step()
        pieces: list[str] = []
        found: dict[str, re.Match[str] | None] = {}  # each rule's next match, reused until passed
        while position < hold:
            best: re.Match[str] | None = None
            best_rule: Rule | None = None
            for rule in active:
                if rule.name not in found or ((cached := found[rule.name]) is not None and cached.start() < position):
                    found[rule.name] = self._search(rule, text, position, hold)
                match = found[rule.name]
                if match is not None and (best is None or match.start() < best.start()):
                    best, best_rule = match, rule
            if best is None or best_rule is None:
                break
            pieces.append(text[position : best.start()])
            verdict = Verdict(
                best_rule.name,
                best_rule.category,
                best_rule.kind,
                best_rule.action,
                self._offset + best.start(),
                self._offset + best.end(),
            )
            step.verdicts.append(verdict)
            if best_rule.action == "truncate":
                self.severed = step.severed = verdict
                step.text = "".join(pieces)
                self._text, self._scan = "", 0
                return step
            pieces.append(f"[REDACTED:{best_rule.kind}]" if best_rule.action == "redact" else best.group())
            position = best.end()
        if position < hold:
            pieces.append(text[position:hold])
            position = hold
        step.text = "".join(pieces)
        self._keep(text, position)
        return step

    def _keep(self, text: str, released_to: int) -> None:
        """Drop released text but the few characters lookbehinds may need."""
        cut = released_to - _CONTEXT
        if cut > 0:
            self._text, self._scan, self._offset = text[cut:], _CONTEXT, self._offset + cut
        else:
            self._text, self._scan = text, released_to

    def _active(self, text: str, position: int) -> list[Rule]:
        """The rules whose trigger occurs in the undecided text, in evaluation order."""
        hits: dict[Trigger, bool] = {}
        active = []
        for rule in self._rules:
            trigger = rule.trigger
            if trigger is not None:
                hit = hits.get(trigger)
                if hit is None:
                    if isinstance(trigger, str):
                        hit = hits[trigger] = text.find(trigger, position) >= 0
                    else:
                        hit = hits[trigger] = trigger.search(text, position) is not None
                if not hit:
                    continue
            active.append(rule)
        return active

    def _search(self, rule: Rule, text: str, position: int, hold: int) -> re.Match[str] | None:
        """The rule's first valid match starting in [position, hold)."""
        while True:
            match = rule.pattern.search(text, position, len(text))
            if match is None or match.start() >= hold:
                return None
            if rule.validate is None or rule.validate(match.group()):
                return match
            position = match.start() + 1

    def _hold_point(self, text: str, position: int) -> int:
        """The earliest position where a match of some rule might still be in progress (the
        holds' ``start``, inlined: this runs once per token)."""
        end = hold = len(text)
        for rule_hold in self._holds:
            span = rule_hold.span
            floor = max(position, end - span) if span else position
            if rule_hold.chars is not None:
                start = len(text.rstrip(rule_hold.chars))
                if start < floor:
                    start = floor
            elif rule_hold.pattern is not None:
                match = rule_hold.pattern.search(text, floor)
                start = end if match is None else match.start()
            else:
                start = floor
            if start < hold:
                hold = start
        return hold
