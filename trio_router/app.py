"""App: a route table and the request pipeline as named steps.

Routes come from an OpenAPI spec (``App.from_spec``: handlers bind by operationId) or are
registered in code (``@app.route``). The pipeline, top to bottom: route -> apply the
operation's deadline -> authorize (security requirements) -> decode and validate parameters ->
read, decode and validate the body -> admission and the handler (sync ones in a pooled
greenlet) -> coerce the result -> check it against the declared responses.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from .builtins import BuiltinEndpoints
from .cors import CorsPolicy
from .errors import DropConnection, HTTPError
from .http.answers import answer
from .http.error_formats import error_format
from .http.request import Request
from .http.response import Response, problem
from .observability.metrics import RequestStats, declare_counter
from .openapi.access import ReadOnlyMode
from .openapi.document import SpecDocument, SpecError, SpecProblem
from .openapi.operations import Operation, compile_operations
from .routing import Match, Router
from .streaming.event_stream import EventStream, event_stream_response, is_event_source
from .streaming.guarded_answer import answers_guarded, guard_answer_async
from .websocket.handshake import websocket_upgrade

log = logging.getLogger("trio_router.app")

Handler = Callable[..., Any]
ResponseValidation = Literal["strict", "warn", "off"]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    operation: str  # operationId, or the handler's name for a route made in code; the metrics label
    handler: Handler
    invoke: Callable[[Request], Any]  # the handler with its arguments planned (may be the handler itself)
    is_async: bool
    timeout: float | None
    spec: Operation | None = None
    websocket: bool = False  # GET upgrades to a WebSocket session running the handler


class App:
    """Maps (method, path template) to handlers through a radix tree. HEAD is answered by GET
    routes and OPTIONS automatically (204 + ``Allow``) unless declared; a path with no route
    for the method gets 405 with ``Allow``. With CORS configured, preflights from allowed
    origins are answered before anything else (security included)."""

    def __init__(self, *, response_validation: ResponseValidation = "strict") -> None:
        self._router: Router[dict[str, Route]] = Router()
        self._methods: dict[str, dict[str, Route]] = {}
        # Templates without parameters, by their exact text: a path equal to one of them needs no
        # tree walk (an all-static template is the most specific match there is).
        self._static: dict[str, Match[dict[str, Route]]] = {}
        self._allow: dict[str, str] = {}
        self.response_validation = response_validation
        self.document: SpecDocument | None = None
        self.cors: CorsPolicy | None = None  # set from the settings by the runner
        self.builtins: BuiltinEndpoints | None = None  # likewise
        self.render_error: Callable[..., Response] = problem  # the spec's x-error-format
        # Tasks that run as long as the server does (health checks, registry polling), started
        # before the first request and cancelled after the drain.
        self.background_tasks: list[Callable[[], Awaitable[object]]] = []
        # How many processes serve this app (``--workers``): the setup hook refuses state that
        # one process keeps for itself when there are more.
        self.workers = 1
        self.stats = RequestStats()  # the serving server's counters from when it starts (App.count)
        # Who may read the server's /metrics: None, anyone; else a check of the request (guard_metrics).
        self.metrics_guard: Callable[[Request], bool] | None = None

    @classmethod
    def from_spec(
        cls,
        spec: str | Path,
        handlers: ModuleType,
        *,
        security: dict[str, dict[str, Any]] | None = None,
        response_validation: ResponseValidation = "strict",
        read_only: ReadOnlyMode = "refuse",
        workers: int = 1,
    ) -> App:
        """An app serving every operation of ``spec`` with the functions of ``handlers``.

        ``security`` configures the spec's security schemes by name, over the handlers
        module's own ``SECURITY`` dict. Raises SpecError listing every problem: an invalid
        document, a missing handler, a handler signature the operation cannot satisfy, a
        security scheme without a verifier, conflicting paths. The handlers module's
        ``setup(app)`` runs last (``app.workers`` is ``workers``); a ValueError from it means the
        app cannot start, and its message says why.
        """
        document = SpecDocument.load(spec)
        app = cls(response_validation=response_validation)
        app.workers = workers
        app.document = document
        problems: list[SpecProblem] = []
        try:
            app.render_error = error_format(document.root.get("x-error-format"))
        except ValueError as exc:
            problems.append(SpecProblem("/x-error-format", str(exc)))
        schemes = {**getattr(handlers, "SECURITY", {}), **(security or {})}
        for operation in compile_operations(document, handlers, schemes, read_only):
            route = Route(
                operation.method,
                operation.path,
                operation.operation_id,
                operation.handler,
                operation.invoke,
                operation.is_async,
                operation.timeout,
                operation,
                operation.websocket,
            )
            try:
                app._add(route)
            except ValueError as exc:
                problems.append(SpecProblem(operation.pointer, str(exc)))
        if problems:
            raise SpecError(problems)
        setup = getattr(handlers, "setup", None)
        if callable(setup):  # the handlers module's hook: background tasks, state built once
            setup(app)
        return app

    def route(
        self, method: str, path: str, *, timeout: float | None = None, websocket: bool = False
    ) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method`` on the path template ``path`` (``/pets/{id}``);
        ``timeout`` overrides the server's request deadline. The handler takes the request, or
        with ``websocket=True`` (GET only) the session's ``WebSocket`` (``ws.request`` is the request)."""

        def register(handler: Handler) -> Handler:
            upper = method.upper()
            is_async = inspect.iscoroutinefunction(handler)
            invoke: Callable[[Request], Any] = handler
            if websocket:
                if upper != "GET" or is_async:
                    raise ValueError(f"WebSocket route {path}: GET only, with a plain (def) handler")
                invoke = partial(_with_websocket, handler)
            self._add(Route(upper, path, handler.__name__, handler, invoke, is_async, timeout, websocket=websocket))
            return handler

        return register

    def background(self, task: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[object]]:
        """Register ``task`` (an async function) to run for the server's lifetime (a decorator)."""
        self.background_tasks.append(task)
        return task

    def guard_metrics(self, allowed: Callable[[Request], bool]) -> None:
        """Serve the server's ``/metrics`` only to requests ``allowed(request)`` accepts (say, one
        with an operator's token); the others get 401. Metrics name the app's internals, so an
        app whose API is not public should not publish them to every client."""
        self.metrics_guard = allowed

    def counter(self, name: str, documentation: str, labels: tuple[str, ...]) -> None:
        """Declare an app counter, exported at /metrics as ``trio_router_<name>`` (merged across
        workers); ``count`` adds to it. Declare once, at setup."""
        declare_counter(name, documentation, labels)

    def count(self, name: str, *labels: str, by: int = 1) -> None:
        """Add to a counter declared with ``counter``, from a handler or a background task."""
        self.stats.count(name, *labels, by=by)

    def _add(self, route: Route) -> None:
        path = route.path
        methods = self._methods.get(path)
        if methods is None:
            methods = self._methods[path] = {}
            self._router.add(path, methods)  # RouteConflict for an equivalent template
            if "{" not in path:
                self._static[path] = Match(path, methods, {})
        if route.method in methods:
            raise ValueError(f"{route.method} {path} is registered twice")
        methods[route.method] = route
        allowed = set(methods) | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
        self._allow[path] = ", ".join(sorted(allowed))

    def shadowed(self, path: str) -> bool:
        """True if a route matches ``path`` (so a built-in endpoint there is never reached)."""
        return path in self._static or self._router.match(path) is not None

    @property
    def routes(self) -> list[Route]:
        return [route for methods in self._methods.values() for route in methods.values()]

    def handle(self, request: Request) -> Coroutine[Any, Any, Response]:
        """The response to ``request`` (await it). Not a coroutine itself: without CORS it hands
        over ``_serve``'s, so a suspended request holds one coroutine frame less (~260 bytes)."""
        if self.render_error is not problem:
            request.render_error = self.render_error
        cors = self.cors
        origin = request.header("origin") if cors is not None else None
        if cors is None or origin is None or not cors.allows(origin):
            return self._serve(request)
        return self._handle_cross_origin(request, cors, origin)

    async def _handle_cross_origin(self, request: Request, cors: CorsPolicy, origin: str) -> Response:
        if request.method == "OPTIONS" and request.header("access-control-request-method"):
            found = self._static.get(request.path) or self._router.match(request.path)
            if found is None:
                allow = "GET, HEAD, OPTIONS" if self.builtins is not None and self.builtins.find(request.path) else None
                if allow is None:
                    raise HTTPError(404, f"no route for {request.path}", close=False)
            else:
                request.route, allow = found.template, self._allow[found.template]
            return cors.preflight(origin, allow, request.header("access-control-request-headers"))
        try:
            response = await self._serve(request)
        except HTTPError as exc:
            exc.headers.extend(cors.response_headers(origin))
            raise
        # Copied, not extended: an app may return one Response object for many requests.
        with_cors = Response(response.body, response.status, stream=response.stream, upgrade=response.upgrade)
        with_cors.headers = [*response.headers, *cors.response_headers(origin)]
        return with_cors

    async def _serve(self, request: Request) -> Response:
        found = self._static.get(request.path) or self._router.match(request.path)
        if found is None:
            return self._builtin(request)
        route, raw_params = self._route(request, found)
        if route is not None and route.spec is not None:
            request.render_error = route.spec.render_error
            request.guardrails = route.spec.guardrails
        if route is None:
            return Response(status=204, headers=[("allow", self._allow[request.route])])
        if route.timeout is not None:
            request.set_operation_timeout(route.timeout)
        if route.spec is not None:
            await self._check_request(route.spec, request, raw_params)
        if route.websocket:  # authenticated and validated: now upgrade
            session_timeout = route.spec.stream_timeout if route.spec else route.timeout
            return websocket_upgrade(request, route.invoke, session_timeout)
        try:
            result = await request.runtime.call(
                route.invoke, route.is_async, request, request._connection.handler_suspended
            )
            return await self._response(route.spec, result, request)
        except (HTTPError, DropConnection):
            raise
        except Exception:
            log.exception("handler for %s %s failed (request id %s)", route.method, route.path, request.id)
            return request.render_error(
                500, "the handler failed; the error is in the server log", request_id=request.id
            )

    @staticmethod
    async def _check_request(spec: Operation, request: Request, raw_params: dict[str, str]) -> None:
        """Authorize, then decode and validate parameters and body; refusals are counted."""
        try:
            if spec.policy is not None:
                await spec.policy.authorize(request)
            spec.decode_parameters(request, raw_params)
            if spec.body is not None:
                await spec.decode_body(request)
        except HTTPError as refused:
            _count_rejection(request, refused)
            raise

    async def _response(self, spec: Operation | None, result: object, request: Request) -> Response:
        """The handler's result as a Response, checked against the spec's declared responses."""
        if isinstance(result, EventStream) or (spec is not None and is_event_source(result)):
            return self._event_stream(spec, result, request)
        if spec is None:
            return answer(result)
        response = spec.responses.answer(result)
        if answers_guarded(spec.guardrails):
            response = await guard_answer_async(request, response)
        return self._checked(spec, response, request)

    def _event_stream(self, spec: Operation | None, result: object, request: Request) -> Response:
        """A generator becomes server-sent events, severed at the stream's deadline."""
        if spec is not None and spec.stream_timeout is not None:
            request.set_operation_timeout(spec.stream_timeout)
        if not isinstance(result, EventStream):
            assert spec is not None
            result = EventStream(result, status=spec.responses.success_status)  # type: ignore[arg-type]
        extension = spec.guardrails if spec is not None else None
        response = event_stream_response(result, request, grace=request.settings.linger_timeout, guardrails=extension)
        return response if spec is None else self._checked(spec, response, request)

    def _route(self, request: Request, found: Match[dict[str, Route]]) -> tuple[Route | None, dict[str, str]]:
        """The route for the request (None for an automatic OPTIONS answer) and its raw path parameters."""
        request.route = found.template
        methods = found.value
        route = methods.get(request.method)
        if route is None and request.method == "HEAD":
            route = methods.get("GET")
        if route is None:
            if request.method == "OPTIONS":
                return None, found.raw_params
            raise _MethodNotAllowed(request.method, self._allow[found.template])
        request.operation = route.operation
        if found.raw_params and route.spec is None:
            request.path_params = found.params
        return route, found.raw_params

    def _builtin(self, request: Request) -> Response:
        """A path no route matches: one of the server's own endpoints, or 404."""
        serve = self.builtins.find(request.path) if self.builtins is not None else None
        if serve is None:
            raise HTTPError(404, f"no route for {request.path}", close=False)
        request.route = request.operation = request.path
        if request.method not in ("GET", "HEAD"):
            if request.method == "OPTIONS":
                return Response(status=204, headers=[("allow", "GET, HEAD, OPTIONS")])
            raise _MethodNotAllowed(request.method, "GET, HEAD, OPTIONS")
        return serve(request)

    def _checked(self, spec: Operation, response: Response, request: Request) -> Response:
        """``response`` if it matches the spec; per ``response_validation``, else a logged 500."""
        if self.response_validation == "off":
            return response
        violations = list(spec.responses.violations(response))
        if not violations:
            return response
        log.log(
            logging.ERROR if self.response_validation == "strict" else logging.WARNING,
            "response of %s (request id %s) does not match the spec: %s",
            spec.operation_id,
            request.id,
            "; ".join(violations),
        )
        if self.response_validation == "warn":
            return response
        return request.render_error(
            500, "the handler's response does not match the API; details are in the server log", request_id=request.id
        )


def _with_websocket(handler: Callable[[Any], Any], request: Request) -> Any:
    return handler(request.websocket)


_REJECTION_REASONS = {401: "unauthenticated", 403: "forbidden", 415: "unsupported_media_type"}


def _count_rejection(request: Request, refused: HTTPError) -> None:
    """Count a request the contract refused, once per reason (a 400 may name several locations)."""
    stats = request.stats
    if refused.status == 400:
        for location in sorted({str(error.get("in")) for error in refused.extra.get("errors", ())}):
            stats.reject(request.operation, f"invalid_{location}")
    elif refused.status in _REJECTION_REASONS:
        stats.reject(request.operation, _REJECTION_REASONS[refused.status])


class _MethodNotAllowed(HTTPError):
    def __init__(self, method: str, allow: str) -> None:
        super().__init__(
            405, f"{method} is not allowed here; allowed: {allow}", close=False, headers=[(b"allow", allow.encode())]
        )
