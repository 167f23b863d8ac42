"""App: a route table and the request pipeline as named steps.

Until the OpenAPI compiler lands, routes are registered in code with exact paths; the
pipeline already has the shape the spec-driven one keeps: route -> apply the operation's
deadline -> admission -> call the handler (sync ones in a pooled greenlet) -> coerce the result.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import HTTPError
from .http.request import Request
from .http.response import Response, coerce_response, problem
from .routing import Match, Router

log = logging.getLogger("trio_router.app")

Handler = Callable[[Request], Any]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    is_async: bool
    timeout: float | None

    @property
    def operation(self) -> str:
        """The metrics label: the handler's name (its operationId once routes come from the spec)."""
        return self.handler.__name__


class App:
    """Maps (method, path template) to handlers through a radix tree. HEAD is answered by GET
    routes and OPTIONS automatically (204 + ``Allow``) unless registered; a path with no route
    for the method gets 405 with ``Allow``."""

    def __init__(self) -> None:
        self._router: Router[dict[str, Route]] = Router()
        self._methods: dict[str, dict[str, Route]] = {}
        # Templates without parameters, by their exact text: a path equal to one of them needs no
        # tree walk (an all-static template is the most specific match there is).
        self._static: dict[str, Match[dict[str, Route]]] = {}
        self._allow: dict[str, str] = {}

    def route(self, method: str, path: str, *, timeout: float | None = None) -> Callable[[Handler], Handler]:
        """Register ``handler`` for ``method`` on the path template ``path`` (``/pets/{id}``);
        ``timeout`` overrides the server's request deadline."""

        def register(handler: Handler) -> Handler:
            methods = self._methods.get(path)
            if methods is None:
                methods = self._methods[path] = {}
                self._router.add(path, methods)  # RouteConflict for an equivalent template
                if "{" not in path:
                    self._static[path] = Match(path, methods, {})
            upper = method.upper()
            if upper in methods:
                raise ValueError(f"{upper} {path} is registered twice")
            methods[upper] = Route(upper, path, handler, inspect.iscoroutinefunction(handler), timeout)
            allowed = set(methods) | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
            self._allow[path] = ", ".join(sorted(allowed))
            return handler

        return register

    @property
    def routes(self) -> list[Route]:
        return [route for methods in self._methods.values() for route in methods.values()]

    async def handle(self, request: Request) -> Response:
        route = self._route(request)
        if route is None:
            return Response(status=204, headers=[("allow", self._allow[request.route])])
        if route.timeout is not None:
            request.set_operation_timeout(route.timeout)
        try:
            result = await request.runtime.call(
                route.handler, route.is_async, request, request._connection.handler_suspended
            )
            return coerce_response(result)
        except HTTPError:
            raise
        except Exception:
            log.exception("handler for %s %s failed (request id %s)", route.method, route.path, request.id)
            return problem(500, "the handler failed; the error is in the server log", request_id=request.id)

    def _route(self, request: Request) -> Route | None:
        """The route for the request, or None for an automatic OPTIONS answer."""
        found = self._static.get(request.path) or self._router.match(request.path)
        if found is None:
            raise HTTPError(404, f"no route for {request.path}", close=False)
        request.route = found.template
        if found.params:
            request.path_params = found.params
        methods = found.value
        route = methods.get(request.method)
        if route is None and request.method == "HEAD":
            route = methods.get("GET")
        if route is None:
            if request.method == "OPTIONS":
                return None
            raise _MethodNotAllowed(request.method, self._allow[found.template])
        request.operation = route.operation
        return route


class _MethodNotAllowed(HTTPError):
    def __init__(self, method: str, allow: str) -> None:
        super().__init__(
            405, f"{method} is not allowed here; allowed: {allow}", close=False, headers=[(b"allow", allow.encode())]
        )
