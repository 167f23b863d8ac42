"""Guardrails on non-streamed JSON answers: the same rules as streams for operations that opt in
with ``x-guardrails`` (an OpenAI answer read by the openai SDK, truncation as content_filter,
any other JSON's strings), verdicts to the sinks and metrics; operations that did not opt in
are left alone. The sans-IO checker is tested on its own first."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import openai
import trio

from tests.conftest import serve, slow_and_quick
from tests.specs import write_spec
from trio_router import App, Request
from trio_router.streaming.guardrails import GuardrailConfig, compile_policy
from trio_router.streaming.guardrails.answers import check_answer

PII = "Mail ann@example.com or call (555) 123-4567 today."
JSON_200 = {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}


def completion(content: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": content}
    return {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip


def test_an_answers_text_fields_are_checked_and_the_value_is_left_alone() -> None:
    policy = compile_policy(GuardrailConfig())
    answer = completion(PII)
    checked = check_answer(policy, answer)
    assert checked.value["choices"][0]["message"]["content"] == "Mail [REDACTED:email] or call [REDACTED:phone] today."
    assert checked.counts == {"redact": 2, "flag": 0, "truncate": 0} and checked.changed
    assert answer["choices"][0]["message"]["content"] == PII  # copied where it changed
    text = check_answer(policy, {"choices": [{"index": 0, "text": PII, "finish_reason": "stop"}]})
    assert text.value["choices"][0]["text"].startswith("Mail [REDACTED:email]")
    nested = check_answer(policy, {"notes": [{"body": PII}], "count": 3})
    assert nested.value == {"notes": [{"body": "Mail [REDACTED:email] or call [REDACTED:phone] today."}], "count": 3}
    assert not check_answer(policy, completion("nothing to see")).changed


def test_a_truncation_cuts_the_text_and_says_content_filter() -> None:
    policy = compile_policy(GuardrailConfig(pii={"email": "truncate"}))
    checked = check_answer(policy, completion(PII))
    choice = checked.value["choices"][0]
    assert choice["message"]["content"] == "Mail " and choice["finish_reason"] == "content_filter"
    assert checked.counts["truncate"] == 1


def app_with(tmp_path: Path, guardrails: object) -> App:
    """A user's app: one operation returning a plain dict, as a FastAPI or Flask user writes it."""
    operation: dict[str, Any] = {"operationId": "chat", "responses": JSON_200}
    if guardrails is not None:
        operation["x-guardrails"] = guardrails
    spec = write_spec(tmp_path, {"/v1/chat/completions": {"post": operation}})
    module = types.ModuleType("answers_app")

    def chat(request: Request) -> dict[str, Any]:
        return completion(PII)

    module.chat = chat  # type: ignore[attr-defined]
    return App.from_spec(spec, module)


def sdk_answer(url: str) -> Any:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


async def test_an_opted_in_operations_answer_is_redacted_for_the_sdk_and_its_verdicts_exported(
    tmp_path: Path,
) -> None:
    sink = tmp_path / "verdicts.jsonl"
    async with serve(app_with(tmp_path, True), guardrail_sinks=[f"json:{sink}"]) as running:
        answer = await trio.to_thread.run_sync(sdk_answer, running.url)
        stats = running.server.context.stats  # type: ignore[union-attr]
    assert answer.choices[0].message.content == "Mail [REDACTED:email] or call [REDACTED:phone] today."
    verdicts = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [(v["kind"], v["action"], v["operation"]) for v in verdicts] == [
        ("email", "redact", "chat"),
        ("phone", "redact", "chat"),
    ]
    assert "ann@example.com" not in sink.read_text()  # verdicts never carry the matched text
    assert stats.counters["guardrail_verdicts"][("chat", "pii.email", "redact")] == 1


async def test_truncate_on_an_answer_ends_it_with_content_filter(tmp_path: Path) -> None:
    async with serve(app_with(tmp_path, {"pii": {"email": "truncate"}})) as running:
        answer = await trio.to_thread.run_sync(sdk_answer, running.url)
    assert answer.choices[0].message.content == "Mail " and answer.choices[0].finish_reason == "content_filter"


async def test_operations_that_did_not_opt_in_are_left_alone(tmp_path: Path) -> None:
    for guardrails in (None, False):
        async with serve(app_with(tmp_path, guardrails)) as running:
            answer = await trio.to_thread.run_sync(sdk_answer, running.url)
        assert answer.choices[0].message.content == PII


async def test_a_huge_answer_is_checked_in_slices_while_other_requests_are_served(tmp_path: Path) -> None:
    """A 4 MB answer takes the checker a good while; an unrelated request that arrives while it
    runs is answered before the check ends (its handler sees no verdict exported yet). Checked
    in one go, the event loop would serve nothing until the verdicts were out."""
    sink = tmp_path / "verdicts.jsonl"
    paths = {
        "/big": {"get": {"operationId": "big", "x-guardrails": True, "responses": JSON_200}},
        "/small": {"get": {"operationId": "small", "responses": JSON_200}},
    }
    spec = write_spec(tmp_path, paths)
    module = types.ModuleType("huge_answer_app")
    started = trio.Event()

    def big(request: Request) -> dict[str, Any]:
        started.set()  # a handler's greenlet runs on the trio task: setting an event is safe
        return {"note": "lorem ipsum dolor sit amet " * 150_000 + "mail ann@example.com"}

    def small(request: Request) -> dict[str, Any]:
        return {"verdicts_so_far": len(sink.read_text()) if sink.exists() else 0}

    module.big, module.small = big, small  # type: ignore[attr-defined]
    async with serve(App.from_spec(spec, module), guardrail_sinks=[f"json:{sink}"]) as running:
        huge, quick = await slow_and_quick(running, "/big", "/small", started)
    assert json.loads(quick.body) == {"verdicts_so_far": 0}  # answered while the check ran
    assert huge.body.endswith(b'mail [REDACTED:email]"}')
    assert [json.loads(line)["kind"] for line in sink.read_text().splitlines()] == ["email"]


def tool_call_answer(arguments: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "send_mail", "arguments": arguments}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"id": "c1", "object": "chat.completion", "choices": [{"index": 0, "message": message,
            "finish_reason": "tool_calls"}]}  # fmt: skip


def test_tool_call_arguments_are_checked_where_the_policy_says_so() -> None:
    arguments = json.dumps({"to": "ann@example.com", "subject": "hi", "count": 2})
    answer = tool_call_answer(arguments)
    unchecked = check_answer(compile_policy(GuardrailConfig()), answer)  # type: ignore[arg-type]
    assert unchecked.value["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == arguments

    checked = check_answer(compile_policy(GuardrailConfig(tool_arguments=True)), answer)  # type: ignore[arg-type]
    sent = checked.value["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(sent) == {"to": "[REDACTED:email]", "subject": "hi", "count": 2}  # still JSON
    clean = tool_call_answer('{"subject":  "hi"}')  # nothing found: the arguments' bytes as they were
    kept = check_answer(compile_policy(GuardrailConfig(tool_arguments=True)), clean)  # type: ignore[arg-type]
    assert kept.value == clean and not kept.changed
    not_json = check_answer(
        compile_policy(GuardrailConfig(tool_arguments=True)), tool_call_answer("to ann@example.com")
    )  # type: ignore[arg-type]
    assert not_json.value["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "to [REDACTED:email]"

    strict = compile_policy(GuardrailConfig(tool_arguments=True, pii={"email": "truncate"}))
    cut = check_answer(strict, answer)  # type: ignore[arg-type]
    choice = cut.value["choices"][0]
    assert "tool_calls" not in choice["message"] and choice["finish_reason"] == "content_filter"
