"""Guardrails on a whole (non-streamed) JSON answer, sans-IO: the same rules and verdicts as a
stream's, on text that is complete, so nothing is held and the split of a text cannot matter.

- An **OpenAI answer** (an object with ``choices``): each choice's ``message.content`` (chat)
  or ``text`` (completions) is checked. ``truncate`` cuts that text right before the match and
  sets the choice's ``finish_reason`` to ``"content_filter"``, OpenAI's own value. With the
  policy's ``tool_arguments``, each tool call's ``function.arguments`` (a JSON document in a
  string) has its string values checked too, and stays valid JSON; a truncation there drops
  the tool calls and ends the choice with ``content_filter``.
- **Any other JSON value**: each string in it is checked on its own; ``truncate`` cuts that
  string before the match (the document keeps its shape, so it still matches its schema).

The answer is copied where it changes (the caller's value is left alone) and only there.
A long text is checked in slices of ``SLICE`` characters through one evaluator (the same
verdicts as at once: the chunking invariance), calling ``pause`` between slices, so that the
I/O layer can let other requests run: checking 64 KB at once held the event loop for up to
160 ms.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .evaluator import GuardrailPolicy, Verdict, check_whole

SLICE = 8192  # characters checked between two pauses (1-2 ms of the default policy on these machines)


@dataclass(slots=True)
class CheckedAnswer:
    """What checking an answer decided: the value to send, every verdict, counts by action."""

    value: Any
    verdicts: list[Verdict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"redact": 0, "flag": 0, "truncate": 0})
    pause: Callable[[], None] | None = None  # between the slices of a long text

    @property
    def changed(self) -> bool:
        return self.counts["redact"] > 0 or self.counts["truncate"] > 0


def check_answer(policy: GuardrailPolicy, value: Any, pause: Callable[[], None] | None = None) -> CheckedAnswer:
    checked = CheckedAnswer(value, pause=pause)
    if isinstance(value, dict) and isinstance(value.get("choices"), list):
        checked.value = {**value, "choices": [_choice(policy, choice, checked) for choice in value["choices"]]}
    else:
        checked.value = _strings(policy, value, checked)
    return checked


def _choice(policy: GuardrailPolicy, choice: Any, checked: CheckedAnswer) -> Any:
    if not isinstance(choice, dict):
        return choice
    message = choice.get("message")
    severed = False
    if isinstance(message, dict):
        if isinstance(message.get("content"), str):
            text, severed = _text(policy, message["content"], checked)
            message = {**message, "content": text}
        if policy.tool_arguments and isinstance(message.get("tool_calls"), list):
            calls, cut = _tool_calls(policy, message["tool_calls"], checked)
            message = {key: value for key, value in message.items() if key != "tool_calls" or not cut}
            if not cut:
                message["tool_calls"] = calls
            severed = severed or cut
        choice = {**choice, "message": message}
    elif isinstance(choice.get("text"), str):
        text, severed = _text(policy, choice["text"], checked)
        choice = {**choice, "text": text}
    else:
        return choice
    if severed:
        choice["finish_reason"] = "content_filter"
    return choice


def _tool_calls(policy: GuardrailPolicy, calls: list[Any], checked: CheckedAnswer) -> tuple[list[Any], bool]:
    """The tool calls with their arguments' strings checked, and whether a truncation hit one."""
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(arguments := function.get("arguments"), str):
            out.append(call)
            continue
        try:
            parsed = json.loads(arguments)
        except (ValueError, RecursionError):  # not JSON: checked as the text it is
            parsed = None
        before = dict(checked.counts)
        if parsed is None:
            text, cut = _text(policy, arguments, checked)
        else:
            value = _strings(policy, parsed, checked)
            cut = checked.counts["truncate"] > before["truncate"]
            changed = checked.counts["redact"] > before["redact"]  # re-encoded only then: same bytes else
            text = json.dumps(value, ensure_ascii=False) if changed else arguments
        if cut:
            return [], True
        out.append({**call, "function": {**function, "arguments": text}})
    return out, False


def _strings(policy: GuardrailPolicy, value: Any, checked: CheckedAnswer) -> Any:
    if isinstance(value, str):
        return _text(policy, value, checked)[0]
    if isinstance(value, dict):
        return {key: _strings(policy, item, checked) for key, item in value.items()}
    if isinstance(value, list):
        return [_strings(policy, item, checked) for item in value]
    return value


def _text(policy: GuardrailPolicy, text: str, checked: CheckedAnswer) -> tuple[str, bool]:
    """The text as the policy leaves it, and whether a truncation cut it."""
    step = check_whole(policy, text, slice_chars=SLICE, pause=checked.pause)
    for verdict in step.verdicts:  # a truncation's verdict among them
        checked.verdicts.append(verdict)
        checked.counts[verdict.action] += 1
    return step.text, step.severed is not None
