"""A cut stream continued on another backend (``stream_resume``), and the usage record of
every attempt that reached a backend, against the independent backend (Starlette on
uvicorn) with the openai SDK as the client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import trio

from tests.conftest import Running
from tests.test_gateway_faults import HELLO, ask, backends, gateway_over, independent, sdk, stats
from tests.test_gateway_tenancy import records

pytestmark = pytest.mark.slow
__all__ = ["independent"]  # the backend's fixture, shared with the fault matrix
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
RESUME = {"stream_resume": {"m": {}}}


def streamed(running: Running, messages: list[dict[str, Any]] = HELLO, **extra: Any) -> dict[str, Any]:
    """What the SDK read of one streamed chat completion: text, chunk ids, roles, the error."""
    seen: dict[str, Any] = {"text": "", "ids": set(), "roles": 0, "error": None}
    try:
        chunks = sdk(running).chat.completions.create(model="m", messages=messages, stream=True, **extra)  # type: ignore[call-overload]
        for chunk in chunks:
            if chunk.choices:  # the gateway's cost summary chunk carries none
                seen["ids"].add(chunk.id)
            for choice in chunk.choices:
                seen["text"] += choice.delta.content or ""
                seen["roles"] += choice.delta.role is not None
    except openai.APIError as exc:
        seen["error"] = exc
    return seen


def is_words(text: str) -> bool:
    """The independent backend's answer, from its first word, with nothing repeated or lost."""
    words = text.split(" ")
    return words == [WORDS[i % len(WORDS)] for i in range(len(words))]


async def test_a_cut_stream_continues_on_the_next_backend_as_one_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "drop-2", "good"), **RESUME) as running:
        seen = await trio.to_thread.run_sync(lambda: streamed(running, max_tokens=6))
        cut, final = await records(tmp_path / "usage.jsonl", 2)
        dropped = stats()["drop-2"]
    assert seen["error"] is None
    # The first two words once, then the rest; the continuation's max_tokens is 6 less what was
    # sent counted as the estimate counts (4 characters a token: 3), so it never exceeds 6.
    assert seen["text"] == "the quick brown fox jumps"
    assert len(seen["ids"]) == 1 and seen["roles"] == 1  # one answer, as the client reads it
    assert dropped["failures"] == 1 and dropped["outstanding"] == 0  # the breaker counted the cut
    assert (cut["backend"], cut["attempt"], cut["outcome"], cut["stream"]) == ("drop-2", 1, "upstream_closed", True)
    assert cut["tokens_out"] >= 1 and cut["cost"] > 0  # what it relayed is its own, and charged
    assert (final["backend"], final["attempts"], final["outcome"]) == ("good", 2, "ok")
    assert "attempt" not in final


async def test_a_value_cut_at_the_seam_is_still_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    """The backend streams "Mail ann@example.com, ..." in 5-character pieces and dies after
    "Mail ann@e": the email is completed by the other backend, and redacted whole."""
    say_pii = [{"role": "user", "content": "say pii"}]
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "drop-2", "good"), **RESUME) as running:
        seen = await trio.to_thread.run_sync(lambda: streamed(running, say_pii))
    assert seen["error"] is None
    assert seen["text"] == "Mail [REDACTED:email], SSN [REDACTED:ssn]."


async def test_a_stalled_stream_continues_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "stall-3", "good"), **RESUME) as running:
        seen = await trio.to_thread.run_sync(lambda: streamed(running))
        cut, _ = await records(tmp_path / "usage.jsonl", 2)
    assert seen["error"] is None and is_words(seen["text"]) and seen["text"].startswith("the quick brown fox")
    assert cut["outcome"] == "upstream_stalled"


async def test_requests_with_tools_are_not_continued_and_the_error_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "drop-2", "good"), **RESUME) as running:
        seen = await trio.to_thread.run_sync(lambda: streamed(running, tools=[tool]))
        (record,) = await records(tmp_path / "usage.jsonl", 1)
    assert seen["text"] == "the quick" and isinstance(seen["error"], openai.APIError)
    assert seen["error"].message == (
        "backend 'drop-2' closed the stream after 3 chunks; not continued: the request uses tools"
    )
    assert (record["backend"], record["outcome"], record["attempts"]) == ("drop-2", "upstream_closed", 1)


async def test_a_cut_stream_with_no_backend_to_continue_it_ends_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "drop-2"), **RESUME) as running:
        seen = await trio.to_thread.run_sync(lambda: streamed(running))
    assert isinstance(seen["error"], openai.APIError) and seen["error"].code == "upstream_closed"
    assert seen["error"].message.endswith("; no other backend could continue it")


async def test_without_the_setting_a_cut_stream_is_not_continued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, "drop-2", "good")) as running:
        seen = await trio.to_thread.run_sync(lambda: streamed(running))
    assert seen["text"] == "the quick" and seen["error"].message == "backend 'drop-2' closed the stream after 3 chunks"


@pytest.mark.parametrize(
    ("fault", "status", "outcome"),
    [("html", 200, "upstream_invalid"), ("ratelimit-30", 429, "rate_limited"), ("hang", 504, "upstream_timeout")],
)
async def test_every_attempt_that_reached_a_backend_has_a_usage_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, independent: str, fault: str, status: int, outcome: str
) -> None:
    async with gateway_over(tmp_path, monkeypatch, backends(independent, fault, "good")) as running:
        raw = await trio.to_thread.run_sync(ask, running)
        failed, final = await records(tmp_path / "usage.jsonl", 2)
    assert raw.headers["x-router-backend"] == "good"
    assert (failed["backend"], failed["attempt"], failed["status"], failed["outcome"]) == (fault, 1, status, outcome)
    assert (failed["tokens_out"], failed["cost"]) == (0, 0)  # nothing was answered, nothing charged
    assert (final["backend"], final["attempts"], final["outcome"]) == ("good", 2, "ok")


async def test_an_unreachable_backend_leaves_no_attempt_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unreachable = [{"name": "gone", "url": "http://127.0.0.1:9", "models": ["m"], "health_url": "http://127.0.0.1:9"}]
    async with gateway_over(tmp_path, monkeypatch, unreachable) as running:
        with pytest.raises(openai.APIStatusError):
            await trio.to_thread.run_sync(ask, running)
        (record,) = await records(tmp_path / "usage.jsonl", 1)
    assert (record["status"], record["outcome"], record["attempts"]) == (502, "error", 1)
