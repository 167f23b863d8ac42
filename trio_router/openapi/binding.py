"""Binding an operation to its handler function and planning what the handler is called with.

A handler either takes the request (``def get_pet(request)``) or declares keyword parameters
named after the operation's parameters, plus ``body`` and ``request`` (``def get_pet(pet_id:
int)``). The plan is made once at startup; a handler asking for something the operation does not
have stops startup with a message naming both.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import HTTPError
from ..http.request import Request

Invoke = Callable[[Request], Any]


class BindingError(ValueError):
    """No handler for an operation, or a handler whose signature the operation cannot satisfy."""


def find_handler(module: ModuleType, operation_id: str | None, x_handler: str | None) -> Callable[..., Any]:
    """``x-handler: module:function`` if given, else the module's function named ``operation_id``."""
    if x_handler:
        module_name, colon, function_name = x_handler.partition(":")
        if not colon or not module_name or not function_name:
            raise BindingError(f"x-handler {x_handler!r} must look like 'package.module:function'")
        try:
            target_module = importlib.import_module(module_name)
        except ImportError as exc:
            raise BindingError(f"x-handler {x_handler!r}: cannot import {module_name!r}: {exc}") from None
        handler = getattr(target_module, function_name, None)
        if not callable(handler):
            raise BindingError(f"x-handler {x_handler!r}: {module_name} has no function {function_name!r}")
        return handler  # type: ignore[no-any-return]
    if not operation_id:
        raise BindingError("the operation has no operationId (or x-handler) to bind a handler by")
    handler = getattr(module, operation_id, None)
    if not callable(handler):
        raise BindingError(f"no handler: {module.__name__} has no function {operation_id!r}")
    return handler  # type: ignore[no-any-return]


def plan_call(
    handler: Callable[..., Any], parameter_names: set[str], has_body: bool, *, websocket: bool = False
) -> tuple[Invoke, bool]:
    """The function the runtime calls with the request, and whether it is a coroutine function.
    A WebSocket operation's handler may also take ``ws`` (or any name annotated ``WebSocket``)."""
    is_async = inspect.iscoroutinefunction(handler)
    try:  # resolve string annotations (`from __future__ import annotations`) to see pydantic models
        signature = inspect.signature(handler, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        signature = inspect.signature(handler)
    declared = list(signature.parameters.values())
    if _takes_request_only(declared) and not websocket:
        return handler, is_async
    getters: list[tuple[str, Callable[[Request], Any]]] = []
    for parameter in declared:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        getter = _websocket_getter(parameter) if websocket else None
        getter = getter or _getter(parameter, parameter_names, has_body)
        if getter is not None:
            getters.append((parameter.name, getter))
        elif parameter.default is parameter.empty:
            raise BindingError(
                f"handler {handler.__name__} wants {parameter.name!r}, which the operation does not declare "
                "(declare it in the spec, give it a default, or take `request`)"
            )

    if is_async:

        async def invoke_async(request: Request) -> Any:
            return await handler(**{name: get(request) for name, get in getters})

        return invoke_async, True

    def invoke(request: Request) -> Any:
        return handler(**{name: get(request) for name, get in getters})

    return invoke, False


def _takes_request_only(declared: list[inspect.Parameter]) -> bool:
    """``def handler(request)`` (or any name annotated ``Request``): called with the request itself."""
    if len(declared) != 1 or declared[0].kind not in (declared[0].POSITIONAL_ONLY, declared[0].POSITIONAL_OR_KEYWORD):
        return False
    return declared[0].name == "request" or declared[0].annotation in (Request, "Request")


def _getter(parameter: inspect.Parameter, parameter_names: set[str], has_body: bool) -> Callable[[Request], Any] | None:
    name, annotation = parameter.name, parameter.annotation
    if name == "request" or annotation in (Request, "Request"):
        return _the_request
    if name == "body" and has_body:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return _model_getter(annotation)
        return _body
    if name in parameter_names:
        default = None if parameter.default is parameter.empty else parameter.default
        return lambda request: request.params.get(name, default)
    return None


def _websocket_getter(parameter: inspect.Parameter) -> Callable[[Request], Any] | None:
    annotation = parameter.annotation
    if parameter.name == "ws" or getattr(annotation, "__name__", annotation) == "WebSocket":
        return _the_websocket
    return None


def _the_websocket(request: Request) -> Any:
    return request.websocket


def _the_request(request: Request) -> Request:
    return request


def _body(request: Request) -> Any:
    return request.body


def _model_getter(model: type[BaseModel]) -> Callable[[Request], Any]:
    def get(request: Request) -> Any:
        if request.body is None:
            return None
        try:
            return model.model_validate(request.body)
        except ValidationError as exc:
            errors = [
                {"in": "body", "pointer": "".join(f"/{part}" for part in error["loc"]), "detail": error["msg"]}
                for error in exc.errors()
            ]
            raise HTTPError(400, "the body does not fit the handler's model", close=False, errors=errors) from None

    return get
