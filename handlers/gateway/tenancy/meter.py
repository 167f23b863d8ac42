"""The tenancy steps around one forwarded request, top to bottom:

1. identify   the tenant and key the GatewayKey scheme verified (``request.tenant`` is set, so
              every later log line carries it);
2. replay     an ``Idempotency-Key`` seen before: its stored answer, or 409 while in flight;
   screen     the messages by the key's or tenant's prompt policy (prompt.py): PII flagged,
              redacted before the backend sees it, or the request refused (400);
3. estimate   tokens and cost (fails open: the request goes on, marked degraded);
4. seatbelt   ``X-Router-Max-Cost`` below the estimate: 402;
5. reserve    the estimate against every limit, atomically (402 budget, 429 rates; the state
              unreachable: the configured policy);
6. forward    to the backends (the gateway's own retries are inside: one reservation, one charge);
              each attempt that reached a backend without giving the answer gets a usage record
              of its own (``attempt``: its number), a cut stream continued elsewhere with the
              tokens it relayed, which are charged;
7. settle     the reservation to the actual usage (released if nothing was answered), the
              request's usage record, the cost headers; for a stream all of this happens when
              it ends, and a summary chunk precedes ``data: [DONE]``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from trio_router import App, EventStream, HTTPError, Request, Response, StreamOutcome, await_, guard_answer

from ..answers import JSONAnswer
from .config import KeyRecord, TenancyConfig, TenantLimits
from .cost import OutputRatios, Tokens, ceiling, clamp, cost, from_usage, money, predict
from .idempotency import Idempotency, fingerprint
from .metered_stream import Tally, counted
from .prompt import PromptScreen
from .state import Ask, Refused, Reservation, State, StateUnavailable, shielded
from .usage import UsageLog, usage_record

if TYPE_CHECKING:
    from ..proxy import AttemptLog

log = logging.getLogger("handlers.gateway.tenancy")
Answer = Response | EventStream
MAX_COST_HEADER = "x-router-max-cost"


class Meter:
    def __init__(self, app: App, config: TenancyConfig, state: State, usage: UsageLog | None) -> None:
        self.app = app
        self.config = config
        self.state = state
        self.usage = usage
        self.idempotency = Idempotency(state, config.idempotency_ttl, config.idempotency_max_answer_bytes)
        self.ratios = OutputRatios(config.output_ratio_alpha)
        self.prompts = PromptScreen(config.prompt_policy)
        configured = [config.prompt_policy, *(tenant.prompt_policy for tenant in config.tenants)]
        configured += [key.prompt_policy for tenant in config.tenants for key in tenant.keys]
        for policy in configured:
            if policy is not None:  # compiled at start-up, not by a first request
                self.prompts.compile(policy)
        self.outage_log = _OncePerSecond()
        app.counter("gateway_degraded", "Gateway requests served with a tenancy step skipped, by step.", ("step",))
        app.counter("gateway_refusals", "Gateway requests refused by a limit, by scope and limit.", ("scope", "limit"))

    def handle(
        self, request: Request, path: str, body: dict[str, Any], forward: Callable[[AttemptLog], Answer]
    ) -> Answer:
        return _Visit(self, request, path, body).run(forward)


class _Visit:
    """One request through the steps; what it learns on the way goes into its usage record."""

    def __init__(self, meter: Meter, request: Request, path: str, body: dict[str, Any]) -> None:
        self.meter = meter
        self.request = request
        self.path = path
        self.body = body
        self.started = time.perf_counter()
        self.started_at = time.time()
        self.degraded: list[str] = []
        self.estimate = Tokens(0, 0)
        self.estimated_cost = 0
        self.reservation: Reservation | None = None
        self.step_ms = 0.0
        self.forwarded = False
        self.usage_clamped = False
        self.tally: Tally | None = None  # a stream's, once it began
        self.carried = (Tokens(0, 0), 0)  # tokens and cost of cut streams continued elsewhere
        self.moved_to: tuple[str, int] | None = None  # the backend a cut stream went on from, its attempt
        self.prompt_counts: dict[str, int] = {}  # the prompt policy's verdicts, by action
        self.idempotency_key = request.header("idempotency-key")
        self.idempotency_key_held = self.idempotency_key is not None
        # What the key names (this endpoint and body); computed only when a key was sent.
        self.fingerprint = fingerprint(path, request.read()) if self.idempotency_key_held else ""
        claims = request.principal.claims
        self.tenant: TenantLimits = claims["tenant"]
        self.key: KeyRecord = claims["key"]

    def run(self, forward: Callable[[AttemptLog], Answer]) -> Answer:
        self.request.tenant = self.tenant.name
        try:
            replayed = self._replay()
            if replayed is not None:
                self._record(replayed.status, "ok", None, 0, Tokens(0, 0), 0, stream=False)
                return replayed
            self._screen()
            self._estimate()
            self._seatbelt()
            self._reserve()
            self.step_ms = (time.perf_counter() - self.started) * 1000
            self.forwarded = True
            answer = forward(self)
        except BaseException as exc:
            self._failed(exc)
            raise
        if isinstance(answer, EventStream):
            return self._stream(answer)
        return self._settle_response(answer)

    # -- before ---------------------------------------------------------------------------

    def _replay(self) -> Response | None:
        """The stored answer to a repeated Idempotency-Key, or None to go on (holding the key)."""
        try:
            replayed = self.meter.idempotency.begin(self.tenant.name, self.idempotency_key, self.fingerprint)
        except StateUnavailable as exc:
            self.idempotency_key_held = False
            self._state_unavailable(exc)
            self._degrade("idempotency")
            return None
        except HTTPError:  # in flight elsewhere, or malformed: not this request's to release
            self.idempotency_key_held = False
            raise
        if replayed is not None:
            self.idempotency_key_held = False
        return replayed

    def _screen(self) -> None:
        policy = self.meter.prompts.policy(self.tenant, self.key)
        if policy is not None:
            self.meter.prompts.screen(self.request, policy, self.body, self.prompt_counts)

    def _estimate(self) -> None:
        try:
            self.estimate = predict(self.body, self.path, self.meter.ratios.get(self.tenant.name))
            self.estimated_cost = self._cost(self.estimate)
        except Exception:  # the seatbelt must never be the reason a request fails
            log.exception("cost estimate failed; the request goes on unestimated")
            self._degrade("estimate")

    def _seatbelt(self) -> None:
        ceiling = self.request.header(MAX_COST_HEADER)
        if ceiling is None:
            return
        try:
            limit = float(ceiling)
        except ValueError:
            raise HTTPError(400, f"{MAX_COST_HEADER} must be a number, not {ceiling!r}", close=False) from None
        if not math.isfinite(limit) or limit < 0:
            raise HTTPError(400, f"{MAX_COST_HEADER} must be a finite number >= 0", close=False)
        if money(self.estimated_cost) > limit:
            raise HTTPError(
                402,
                f"the estimated cost {money(self.estimated_cost):.6f} exceeds {MAX_COST_HEADER} {limit:g}",
                close=False,
                code="estimated_cost_too_high",
            )

    def _reserve(self) -> None:
        ask = Ask(self.tenant, self.key, self.estimated_cost, self.estimate.total, time.time())
        try:
            self.reservation = await_(self.meter.state.reserve(ask))
        except Refused as refusal:
            self.meter.app.count("gateway_refusals", refusal.scope, refusal.limit)
            retry = [(b"retry-after", str(refusal.retry_after).encode())] if refusal.retry_after else []
            code = "budget_exceeded" if refusal.status == 402 else "rate_limit_exceeded"
            raise HTTPError(refusal.status, str(refusal), close=False, headers=retry, code=code) from None
        except StateUnavailable as exc:
            self._state_unavailable(exc)

    def _state_unavailable(self, exc: StateUnavailable) -> None:
        closed = self.meter.config.state.on_error == "closed"
        self.meter.outage_log.warn(
            "the tenancy state cannot be reached (%s); %s", exc, "refusing" if closed else "serving unmetered"
        )
        if closed:
            raise HTTPError(503, "limits cannot be checked now; try again shortly", close=False) from None
        if "state" not in self.degraded:
            self._degrade("state")

    def _degrade(self, step: str) -> None:
        self.degraded.append(step)
        self.meter.app.count("gateway_degraded", step)

    # -- after ----------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> None:
        """No answer: release the reservation, record the request, let the key be used again."""
        self._adjust(Tokens(0, 0), 0)
        status = exc.status if isinstance(exc, HTTPError) else 499 if isinstance(exc, trio.Cancelled) else 500
        attempts = exc.extra.get("attempts", []) if isinstance(exc, HTTPError) else []
        outcome = "error" if self.forwarded else "refused"
        self._record(status, outcome, None, len(attempts), Tokens(0, 0), 0, stream=False)
        self._idempotency(self.meter.idempotency.abandon, self.idempotency_key)

    def _idempotency(self, step: Callable[..., None], *args: Any) -> None:
        """Storing or forgetting an answer: the answer goes out whatever happens to that."""
        if not self.idempotency_key_held:
            return
        try:
            step(self.tenant.name, *args)
        except StateUnavailable as exc:
            log.warning("the Idempotency-Key's answer could not be stored: %s", exc)

    def _settle_response(self, answer: Response) -> Response:
        used = self._usage_of(answer) if answer.status == 200 else Tokens(0, 0)
        actual = self._cost(used)
        self._adjust(used, actual)
        backend, attempts = _router_headers(answer.headers)
        # The operation's guardrails, here rather than after the handler, so the record has the verdicts.
        answer = guard_answer(self.request, answer, answer.payload if isinstance(answer, JSONAnswer) else None)
        outcome = "ok" if answer.status < 400 else "error"
        self._record(answer.status, outcome, backend, attempts, used, actual, False, answer.guardrails)
        answer.headers.extend((name.encode(), value.encode()) for name, value in self._cost_headers(actual))
        self._idempotency(self.meter.idempotency.finish, self.idempotency_key, self.fingerprint, answer)
        return answer

    def _usage_of(self, answer: Response) -> Tokens:
        if isinstance(answer, JSONAnswer):  # parsed (and checked) by the proxy already
            reported = from_usage(answer.payload.get("usage"))
        else:
            try:
                reported = from_usage(json.loads(answer.body).get("usage"))
            except (ValueError, AttributeError, RecursionError):
                reported = None
        if reported is None:  # a backend that reports no usage: charge the estimate
            return self.estimate
        trusted = self._trusted(reported)
        self.meter.ratios.observe(self.tenant.name, trusted)
        return trusted

    def _trusted(self, reported: Tokens) -> Tokens:
        """A backend's usage, clamped to what the request could have produced: a negative count
        would credit the tenant, an absurd one would drain its budget."""
        most = ceiling(self.body, self.path, self.meter.config.max_output_tokens)
        tokens, moved = clamp(reported, most)
        if moved:
            self.usage_clamped = True
            self.meter.outage_log.warn(
                "backend usage %s clamped to %s (request id %s)", reported, tokens, self.request.id
            )
        return tokens

    # -- attempts (the proxy's AttemptLog) -------------------------------------------------

    def attempt_ended(self, backend: str, status: int, outcome: str, number: int, relayed: bool = False) -> None:
        used, actual = Tokens(0, 0), 0
        if relayed and self.tally is not None:  # what the cut stream carried is its own, and charged
            used = self._used(self.tally)
            actual = self._cost(used)
            carried, carried_cost = self.carried
            self.carried = (Tokens(carried.input + used.input, carried.output + used.output), carried_cost + actual)
            # The continuation's prompt holds the text sent so far.
            self.tally.restart(Tokens(self.estimate.input + used.output, self.estimate.output))
        self._record(status, outcome, backend, number, used, actual, relayed, attempt=number)

    def stream_moved(self, backend: str, number: int) -> None:
        self.moved_to = (backend, number)

    def _stream(self, answer: EventStream) -> EventStream:
        tally = self.tally = Tally(self.estimate)
        answer.source = counted(answer.source, tally, self.summary)
        answer.headers.extend(self._cost_headers(None))
        answer.on_close = lambda outcome: self._stream_closed(outcome, tally, answer.headers)
        self._idempotency(self.meter.idempotency.finish_stream, self.idempotency_key, self.fingerprint)
        return answer

    async def _stream_closed(self, outcome: StreamOutcome, tally: Tally, headers: list[tuple[str, str]]) -> None:
        used = self._used(tally)
        if tally.reported is not None:
            self.meter.ratios.observe(self.tenant.name, used)
        actual = self._cost(used)
        if self.reservation is not None:
            charged, charged_cost = self._charged(used, actual)
            try:
                await shielded(self.meter.state.adjust(self.reservation, charged_cost, charged.total))
            except StateUnavailable as exc:
                log.warning("a stream's usage could not be settled: %s", exc)
        backend, attempts = self.moved_to or _router_headers(headers)
        self._record(200, _stream_outcome(outcome), backend, attempts, used, actual, True, outcome.guardrails)

    def _charged(self, used: Tokens, actual: int) -> tuple[Tokens, int]:
        """A stream's tokens and cost with those of the cut streams it continued."""
        carried, carried_cost = self.carried
        return Tokens(carried.input + used.input, carried.output + used.output), carried_cost + actual

    def _used(self, tally: Tally) -> Tokens:
        return tally.tokens() if tally.reported is None else self._trusted(tally.reported)

    def summary(self, tally: Tally) -> dict[str, Any]:
        used = self._used(tally)
        used, actual = self._charged(used, self._cost(used))
        return {
            "cost_estimated": money(self.estimated_cost),
            "cost_actual": money(actual),
            "efficiency": _efficiency(self.estimated_cost, actual),
            "tokens_in": used.input,
            "tokens_out": used.output,
            "overhead_ms": round(self.step_ms, 3),
        }

    def _cost(self, tokens: Tokens) -> int:
        """Micro-units at the requested model's price."""
        return cost(self.meter.config.price(self.body["model"]), tokens)

    def _adjust(self, used: Tokens, actual: int) -> None:
        if self.reservation is None:
            return
        try:
            await_(shielded(self.meter.state.adjust(self.reservation, actual, used.total)))
        except StateUnavailable as exc:
            log.warning("a reservation could not be settled: %s", exc)
        self.reservation = None

    def _cost_headers(self, actual: int | None) -> list[tuple[str, str]]:
        headers = [
            ("x-router-cost-estimated", f"{money(self.estimated_cost):.6f}"),
            ("x-router-tenancy-ms", f"{self.step_ms:.3f}"),
        ]
        if actual is not None:
            headers.append(("x-router-cost-actual", f"{money(actual):.6f}"))
            efficiency = _efficiency(self.estimated_cost, actual)
            if efficiency is not None:
                headers.append(("x-router-cost-efficiency", f"{efficiency:.3f}"))
        if self.degraded:
            headers.append(("x-router-degraded", ",".join(self.degraded)))
        return headers

    def _record(
        self,
        status: int,
        outcome: str,
        backend: str | None,
        attempts: int,
        used: Tokens,
        actual: int,
        stream: bool,
        guardrails: dict[str, int] | None = None,
        attempt: int | None = None,
    ) -> None:
        usage = self.meter.usage
        if usage is None:
            return
        extra: dict[str, Any] = {} if attempt is None else {"attempt": attempt}
        usage.write(
            usage_record(
                request_id=self.request.id,
                tenant=self.tenant.name,
                key_id=self.key.id,
                model=self.body.get("model"),
                backend=backend,
                endpoint=self.path,
                tokens=used,
                cost=money(actual),
                cost_estimated=money(self.estimated_cost),
                latency_ms=(time.perf_counter() - self.started) * 1000,
                status=status,
                outcome=outcome,
                attempts=attempts,
                stream=stream,
                guardrails={**(guardrails or {}), **self.prompt_counts},
                idempotency_key=self.idempotency_key,
                usage_clamped=self.usage_clamped,
                degraded=self.degraded,
                started_at=self.started_at,
                **extra,
            )
        )


class _OncePerSecond:
    """A warning that every request of an outage would repeat: logged at most once a second,
    with how many were left out."""

    def __init__(self) -> None:
        self._second = 0
        self._left_out = 0

    def warn(self, message: str, *args: object) -> None:
        second = int(time.monotonic())
        if second == self._second:
            self._left_out += 1
            return
        if self._left_out:
            message += f" ({self._left_out} more like this in the last second)"
        self._second, self._left_out = second, 0
        log.warning(message, *args)


def _stream_outcome(outcome: StreamOutcome) -> str:
    """The record's outcome: ``ok``, how the stream was cut, or what its backend did (a relay's
    ``StreamError`` code: upstream_stalled, upstream_truncated, ...)."""
    if outcome.reason == "complete":
        return "ok"
    if outcome.reason == "aborted":
        return outcome.code if outcome.code and outcome.code.startswith("upstream_") else "internal"
    return outcome.reason


def _efficiency(estimated: int, actual: int) -> float | None:
    """How much of the estimate was used (1.0: exact; below: the estimate was generous)."""
    return round(actual / estimated, 4) if estimated > 0 else None


def _router_headers(headers: list[tuple[Any, Any]]) -> tuple[str | None, int]:
    found = {_text(name): _text(value) for name, value in headers}
    attempts = found.get("x-router-attempts", "0")
    return found.get("x-router-backend"), int(attempts) if attempts.isdigit() else 0


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
