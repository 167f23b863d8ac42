"""The guardrails on a non-streamed JSON answer of an operation that opted in with an explicit
``x-guardrails`` (``true`` or a mapping; streams are checked by default, buffered answers only
where the spec says so): the answer checked by the operation's policy (guardrails/answers.py),
re-encoded only if a rule changed it, its verdicts exported like a stream's.

``guard_answer(request, response)`` is public so that a handler that must know the verdicts
(the gateway writes them into its usage record) can check its answer itself; an answer checked
once carries its counts in ``response.guardrails`` and is not checked again.
"""

from __future__ import annotations

import json
from typing import Any

from ..http.request import Request
from ..http.response import NOT_JSON, Response
from ..runtime.bridge import in_handler, sleep
from .guardrails.answers import SLICE, check_answer
from .guardrails.evaluator import Verdict
from .guardrails.service import of as guardrails_of

_JSON = (b"application/json", b"application/problem+json")


def answers_guarded(extension: object) -> bool:
    """Whether an operation's ``x-guardrails`` opts its buffered answers in."""
    return extension is not None and extension is not False


async def guard_answer_async(request: Request, response: Response, value: Any = None) -> Response:
    """``guard_answer`` from async code: a long answer is checked in a pooled greenlet, which
    lets other requests run between its slices."""
    if len(response.body) <= SLICE:
        return guard_answer(request, response, value)
    checked: Response = await request.runtime.pool.run(lambda _: guard_answer(request, response, value), None, _no_op)
    return checked


def guard_answer(request: Request, response: Response, value: Any = None) -> Response:
    """``response`` with its JSON body checked by the request's operation policy (``value``:
    what the body encodes, when the caller has it; else the body is parsed). Counts by action
    land in ``response.guardrails``; the response is returned as it was when nothing changed."""
    extension = request.guardrails
    if response.guardrails is not None or not answers_guarded(extension) or response.stream is not None:
        return response
    server_guardrails = guardrails_of(request)
    policy = server_guardrails.policy(extension) if server_guardrails is not None else None
    if policy is None or not 200 <= response.status < 300 or not _is_json(response):
        return response
    if value is None:
        value = response.value
    if value is NOT_JSON:
        try:
            value = json.loads(response.body)
        except (ValueError, RecursionError):
            return response
    checked = check_answer(policy, value, _let_others_run if in_handler() else None)
    response.guardrails = checked.counts
    export_verdicts(request, checked.verdicts)
    if checked.changed:
        response.body = json.dumps(checked.value, separators=(",", ":"), ensure_ascii=False).encode()
        response.value = checked.value
    return response


def export_verdicts(request: Request, verdicts: list[Verdict]) -> None:
    """Verdicts an app's own check found (a prompt's, say), to the server's sinks and metrics
    as the stream's and the answers' go, with the request's id, operation and tenant."""
    server_guardrails = guardrails_of(request)
    exporter = server_guardrails.verdicts if server_guardrails is not None else None
    if verdicts and exporter is not None:
        exporter.export(verdicts, request_id=request.id, operation=request.operation, tenant=request.tenant)


def _is_json(response: Response) -> bool:
    for name, value in response.headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media in _JSON or media.endswith(b"+json")
    return False


def _let_others_run() -> None:
    sleep(0)  # a checkpoint: other tasks run, then this greenlet goes on


def _no_op() -> None:
    pass
