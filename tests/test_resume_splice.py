"""The splice of a cut stream and its continuation (handlers/gateway/resume.py), without sockets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from handlers.gateway.config import ResumeConfig
from handlers.gateway.resume import continuation, resumable, unsafe
from trio_router import Event, StreamError


def chunk(ident: str, delta: dict[str, Any], finish: str | None = None) -> Event:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return Event(json.dumps({"id": ident, "created": 1 if ident == "a" else 2, "model": ident, "choices": [choice]}))


def cut_after(events: list[Event], closed: list[str], name: str) -> Iterator[Event]:
    try:
        yield from events
        raise StreamError(f"{name} closed", code="upstream_closed")
    finally:
        closed.append(name)


def payloads(events: Iterator[Event]) -> list[Any]:
    """Each event's chunk (a rewritten one is a dict already), or the ``[DONE]`` marker."""
    return [e.data if isinstance(e.data, dict) or e.data == "[DONE]" else json.loads(e.data) for e in events]


def test_the_continuation_takes_the_first_streams_identity_and_sends_no_second_role() -> None:
    closed: list[str] = []
    prefixes: list[str] = []
    first = cut_after([chunk("a", {"role": "assistant", "content": ""}), chunk("a", {"content": "Hel"})], closed, "a")

    def go_on(sent: str, cut: StreamError) -> Iterator[Event]:
        prefixes.append(sent)
        return iter([chunk("b", {"role": "assistant", "content": "lo"}), chunk("b", {}, "stop"), Event("[DONE]")])

    out = payloads(resumable(first, go_on, 1))
    assert prefixes == ["Hel"] and closed == ["a"]  # the cut stream is closed before the next is read
    assert [c["id"] for c in out[:-1]] == ["a"] * 4 and {c["created"] for c in out[:-1]} == {1}
    assert [c["choices"][0]["delta"] for c in out[:-1]] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert out[-1] == "[DONE]"


def test_resumes_stop_at_max_resumes_and_the_last_cut_is_raised() -> None:
    closed: list[str] = []
    names = iter(["b", "c"])

    def go_on(sent: str, cut: StreamError) -> Iterator[Event]:
        name = next(names)
        return cut_after([chunk(name, {"content": name})], closed, name)

    with pytest.raises(StreamError, match=r"^b closed$"):
        list(resumable(cut_after([chunk("a", {"content": "a"})], closed, "a"), go_on, 1))
    assert closed == ["a", "b"]


def test_no_continuation_raises_the_cut_with_a_reason() -> None:
    with pytest.raises(StreamError, match=r"^a closed; no other backend could continue it$") as caught:
        list(resumable(cut_after([], [], "a"), lambda sent, cut: None, 1))
    assert caught.value.code == "upstream_closed"


def test_closing_the_splice_closes_the_current_stream() -> None:
    closed: list[str] = []
    spliced = resumable(cut_after([chunk("a", {"content": "x"}), chunk("a", {"content": "y"})], closed, "a"), None, 1)  # type: ignore[arg-type]
    next(spliced)
    spliced.close()
    assert closed == ["a"]


def test_a_continuation_asks_for_the_rest_within_what_is_left_of_max_tokens() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10, "stream": True}
    payload = continuation(body, "m2", "12345678", ResumeConfig(message_fields={"prefix": True}))
    assert payload["model"] == "m2" and payload["max_tokens"] == 8  # 8 characters: 2 tokens sent
    assert payload["messages"][-1] == {"role": "assistant", "content": "12345678", "prefix": True}
    assert payload["continue_final_message"] is True and payload["add_generation_prompt"] is False
    assert body["messages"] == [{"role": "user", "content": "hi"}]  # the request itself is untouched
    assert continuation(body, "m", "", ResumeConfig()) == body  # nothing sent: the request again


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"tools": [{"type": "function"}]}, "the request uses tools"),
        ({"n": 2}, "the request asks for n > 1 choices"),
        ({"logprobs": True}, "the request asks for logprobs"),
        ({"response_format": {"type": "json_object"}}, "the request constrains the answer's format"),
        ({"n": 1, "response_format": {"type": "text"}}, None),
    ],
)
def test_unsafe_requests_are_named(extra: dict[str, Any], reason: str | None) -> None:
    assert unsafe({"model": "m", "messages": [], **extra}) == reason
