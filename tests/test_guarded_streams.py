"""Guardrails on real streams: OpenAI-style chat chunks read by the openai SDK, verdicts in SIEM
sink files (and a sink that fails without breaking the stream), held text released on time
(MockClock), and x-guardrails per operation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import trio
import trio.testing

import trio_router
from tests.conftest import serve, slow_and_quick
from tests.specs import SSE_RESPONSE, write_spec
from trio_router import App, Event, EventStream, Request


def chunk(content: str | None, finish_reason: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def chat_app(pieces: list[str], *, as_text: bool = False) -> App:
    """A /v1/chat/completions streaming ``pieces`` as an OpenAI-compatible backend would."""
    app = App()

    @app.route("POST", "/v1/chat/completions")
    def completions(request: Request) -> EventStream:
        def generate() -> Iterator[Event]:
            for piece in [*pieces, None]:
                data = chunk(piece, None if piece is not None else "stop")
                yield Event(json.dumps(data) if as_text else data)  # proxied text or a dict: both understood
            yield Event("[DONE]")

        return EventStream(generate())

    return app


def read_with_sdk(url: str) -> tuple[str, list[Any]]:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


async def test_openai_chunks_are_rewritten_and_the_sdk_reads_them() -> None:
    pieces = ["Contact jo", "hn@exa", "mple.com or call (555) ", "123-4567", " today."]
    for as_text in (False, True):
        async with serve(chat_app(pieces, as_text=as_text)) as running:
            text, chunks = await trio.to_thread.run_sync(read_with_sdk, running.url)
        assert text == "Contact [REDACTED:email] or call [REDACTED:phone] today."
        summary = chunks[-1]
        assert summary.choices == []
        assert summary.model_extra["guardrails"] == {"redact": 2, "flag": 0, "truncate": 0, "forced_flushes": 0}
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_a_truncated_completion_ends_with_content_filter() -> None:
    pieces = ["The key is AKIA", "ABCDEFGHIJKLMNOP and more", " secrets"]
    async with serve(chat_app(pieces)) as running:
        text, chunks = await trio.to_thread.run_sync(read_with_sdk, running.url)
    assert text == "The key is "  # nothing from the match on
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].model_extra["guardrails"]["severed"]["rule"] == "blocked.aws-access-key"


async def test_verdicts_reach_the_sinks_and_a_failing_sink_breaks_nothing(tmp_path: Path) -> None:
    json_file, cef_file = tmp_path / "verdicts.jsonl", tmp_path / "verdicts.cef"
    sinks = [f"json:{json_file}", "json:/dev/full", f"cef:{cef_file}"]  # /dev/full: every write fails
    app = chat_app(["mail me: ann@example.org or 4111 1111 1111 1111."])
    async with serve(app, guardrail_sinks=sinks) as running:
        text, _ = await trio.to_thread.run_sync(read_with_sdk, running.url)
        stats = running.server.context.stats  # type: ignore[union-attr]
    assert text == "mail me: [REDACTED:email] or [REDACTED:credit_card]."
    records = [json.loads(line) for line in json_file.read_text().splitlines()]
    assert [(r["rule"], r["action"], r["start"], r["end"]) for r in records] == [
        ("pii.email", "redact", 9, 24),
        ("pii.credit_card", "redact", 28, 47),
    ]
    assert records[0]["operation"] == "completions" and records[0]["request_id"]
    assert "ann@example.org" not in json_file.read_text() + cef_file.read_text()  # the match itself never leaves
    cef = cef_file.read_text().splitlines()
    assert cef[0].startswith("CEF:0|trio-router|trio-router|0.1.0|pii.email|guardrail redact: email|5|rt=")
    assert "act=redact" in cef[0] and "cn1=9 cn2Label=end cn2=24" in cef[0]
    assert stats.counters["guardrail_sink_failures"] == {("json:/dev/full",): 2}
    assert stats.counters["guardrail_verdicts"][("completions", "pii.email", "redact")] == 1


def slow_app() -> App:
    app = App()

    @app.route("GET", "/slow", timeout=30)
    def slow(request: Request) -> EventStream:
        def generate() -> Iterator[str]:
            yield "hello"  # held: it might be the start of an email address
            trio_router.sleep(10)
            yield " world"

        return EventStream(generate(), keepalive=100)

    return app


async def test_held_text_goes_out_after_max_hold_not_when_the_source_speaks_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve(slow_app(), guardrails={"max_hold": 1.5}) as running:
        client = await running.connect()
        await client.send(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        started = trio.current_time()
        arrivals: list[tuple[float, bytes]] = []
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            data = await client.stream.receive_some(65536)
            received += data
            arrivals.append((trio.current_time() - started, data))
    timeline = [(at, data.split(b"\r\n")[1]) for at, data in arrivals if b"data:" in data]
    # " world": the space goes at once, "world" waits for the end of the stream (it could be an address).
    assert timeline == [(1.5, b"data: hello\n\n"), (10, b"data:  \n\n"), (10, b"data: world\n\n")]


async def test_x_guardrails_off_and_overrides(tmp_path: Path) -> None:
    import types

    paths = {
        "/raw": {"get": {"operationId": "raw", "x-guardrails": False, "responses": SSE_RESPONSE}},
        "/strict": {
            "get": {"operationId": "strict", "x-guardrails": {"pii": {"email": "truncate"}}, "responses": SSE_RESPONSE}
        },
    }
    spec = write_spec(tmp_path, paths)
    module = types.ModuleType("guarded_handlers")

    def raw(request: Request) -> Iterator[str]:
        yield "to bob@example.com, card 4111 1111 1111 1111"

    module.raw = raw  # type: ignore[attr-defined]
    module.strict = raw  # type: ignore[attr-defined]
    async with serve(App.from_spec(spec, module)) as running:
        client = await running.connect()
        assert (await client.request("GET", "/raw")).body == b"data: to bob@example.com, card 4111 1111 1111 1111\n\n"
        severed = (await client.request("GET", "/strict")).body
        assert severed.startswith(b"data: to \n\nevent: error\n")
        assert b'"rule":"pii.email"' in severed


async def test_a_huge_event_is_checked_off_the_event_loop(tmp_path: Path) -> None:
    """One 2 MB event of a stream: a request arriving while it is checked is answered before the
    check ends (its handler sees no verdict exported yet); checked inline, the event loop would
    not even wake the test up before the verdicts were out."""
    sink = tmp_path / "verdicts.jsonl"
    app = App()
    started = trio.Event()

    @app.route("GET", "/huge")
    def huge(request: Request) -> EventStream:
        def generate() -> Iterator[str]:
            started.set()
            yield "build 12 of 345 at 6.7 " * 100_000 + "mail ann@example.com"  # digits: every rule works

        return EventStream(generate())

    @app.route("GET", "/small")
    def small(request: Request) -> dict[str, int]:
        return {"verdicts_so_far": len(sink.read_text()) if sink.exists() else 0}

    async with serve(app, guardrail_sinks=[f"json:{sink}"]) as running:
        # 50 ms after the event was yielded its check (half a second or more) is under way.
        huge, quick = await slow_and_quick(running, "/huge", "/small", started, settle=0.05)
    assert json.loads(quick.body) == {"verdicts_so_far": 0}
    body = huge.body
    assert body.endswith(b"data: [REDACTED:email]\n\n") and b"ann@example.com" not in body  # held, then out
    assert [json.loads(line)["kind"] for line in sink.read_text().splitlines()] == ["email"]
