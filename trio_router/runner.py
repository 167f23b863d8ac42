"""Run one server process: load the app, bind, serve, and turn signals into a graceful shutdown."""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

from .app import App
from .builtins import BuiltinEndpoints
from .cors import CorsPolicy
from .http.server import bind_listener, listener_url
from .openapi.document import SpecError, SpecProblem
from .openapi.served import with_error_responses
from .serving import Server
from .settings import Settings
from .wire.choice import resolve as resolve_parser

log = logging.getLogger("trio_router")

_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class AppLoadError(Exception):
    """The handlers module cannot be imported or holds no app; the message is meant for a human."""


def load_app(settings: Settings) -> App:
    """The app ``settings`` describe, with its CORS policy and the built-in endpoints."""
    app = _load_app(settings)
    app.cors = CorsPolicy.from_settings(settings)
    app.builtins = BuiltinEndpoints(settings, served_document(app, settings))
    for path in app.builtins.paths:
        if app.shadowed(path):
            log.info("built-in endpoint %s is left to the app's own route there", path)
    return app


def served_document(app: App, settings: Settings) -> dict[str, Any] | None:
    """The spec as /openapi.json serves it: with the server's own error answers declared."""
    if app.document is None:
        return None
    if not settings.openapi_error_responses:
        return app.document.root
    return with_error_responses(app.document.root, (route.spec for route in app.routes if route.spec is not None))


def _load_app(settings: Settings) -> App:
    """The app to serve: the handlers module's own ``app`` if it builds one in code, else the
    spec's operations bound to the module's functions.

    The module is imported from the working directory first, as users expect.
    """
    if settings.spec is not None and settings.handlers is None:
        raise AppLoadError(
            f"--spec {settings.spec} needs the handlers it is served with: name their module (--handlers mymodule)"
        )
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    spec: str | None = settings.spec
    if settings.handlers is None:  # a shipped app: --app, or the Pet Store by default
        shipped_module, shipped_spec = SHIPPED_APPS[settings.app or "petstore"]
        module_name, spec = f"trio_router_apps.{shipped_module}", str(_shipped_spec(shipped_spec))
    else:
        module_name = settings.handlers
    module = _import_handlers(module_name)
    app = getattr(module, "app", None)
    if isinstance(app, App):
        if settings.spec is not None:
            raise AppLoadError(
                f"handlers module {module_name!r} builds its own `app`, so --spec {settings.spec} would be ignored;"
                " drop one of them"
            )
        return app
    if not spec:
        raise AppLoadError(f"handlers module {module_name!r} has no `app` and no spec is given (--spec)")
    try:
        return App.from_spec(
            spec,
            module,
            security=settings.security,
            response_validation=settings.response_validation,
            read_only=settings.read_only_requests,
            workers=settings.workers,
        )
    except SpecError as exc:
        raise AppLoadError(_spec_refusal(spec, module_name, exc.problems)) from None
    except ValueError as exc:  # the module's setup(app) refused: a bad configuration
        raise AppLoadError(f"handlers module {module_name!r} cannot start: {exc}") from None


# --app name -> (module of trio_router_apps, spec file)
SHIPPED_APPS = {
    "petstore": ("petstore", "petstore.yaml"),
    "gateway": ("gateway", "gateway.yaml"),
    "mock-backend": ("mock_backend", "mock_backend.yaml"),
}


def _shipped_spec(name: str) -> Path:
    from trio_router_apps import spec_path

    return Path(spec_path(name))


def _import_handlers(module_name: str) -> ModuleType:
    """The handlers module, or one line saying why not: the name given, the error and where it
    happened (``--log-level debug`` logs the traceback too)."""
    if module_name.endswith(".py"):
        dotted = module_name[:-3].replace(os.sep, ".").strip(".")
        raise AppLoadError(f"--handlers takes a module name, not a file: drop the .py (--handlers {dotted})")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(
                f"no handlers module {module_name!r} in the working directory ({os.getcwd()}) or the installed packages"
            ) from None
        failure: Exception = exc
    except Exception as exc:  # the module's own code failed while it was imported
        failure = exc
    log.debug("importing handlers module %s failed", module_name, exc_info=failure)
    reason = failure.msg if isinstance(failure, SyntaxError) else str(failure)
    raise AppLoadError(f"cannot import handlers {module_name!r}: {type(failure).__name__}: {reason}{_where(failure)}")


def _where(error: Exception) -> str:
    """`` (file.py:12)``: the line of the user's code that raised (or the syntax error's)."""
    if isinstance(error, SyntaxError) and error.filename:
        filename, line = error.filename, error.lineno
    else:
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if not frame.filename.startswith("<")]
        if not frames:
            return ""
        filename, line = frames[-1].filename, frames[-1].lineno
    if filename.startswith(os.getcwd() + os.sep):
        filename = os.path.relpath(filename)
    return f" ({filename}:{line})"


def _spec_refusal(spec: str, module_name: str, problems: list[SpecProblem]) -> str:
    """One line for one problem (the usual case: a typo), else a line per problem."""
    if len(problems) == 1:
        return f"spec {spec} cannot be served with {module_name}: {problems[0]}"
    listing = "\n".join(f"  {problem}" for problem in problems)
    return f"spec {spec} cannot be served with {module_name} ({len(problems)} problems):\n{listing}"


def run_process(
    app: App,
    settings: Settings,
    listener: socket.socket | None = None,
    watch_parent: bool = False,
    worker_name: str | None = None,
    extra_listeners: Sequence[socket.socket] = (),
) -> int:
    """Serve until SIGINT/SIGTERM. Exit code 0 on a clean drain, 1 if requests had to be cancelled."""
    if listener is None:
        listener = bind_listener(settings.host, settings.port, settings.backlog, settings.reuse_port)
    listeners = [listener, *extra_listeners]
    for each in listeners:
        log.info(
            "listening on %s (pid %d, HTTP parser %s)", listener_url(each), os.getpid(), resolve_parser(settings.http)
        )
    freeze_startup_objects()
    clean = trio.run(_serve, Server(app, settings, worker_name), listeners, watch_parent)
    log.info("stopped%s", "" if clean else " after cancelling requests at the grace deadline")
    return 0 if clean else 1


def freeze_startup_objects() -> None:
    """Exempt what startup built (modules, the compiled spec, validators, the app) from garbage
    collection for good.

    Those ~120k objects live as long as the process, yet every full collection traversed them
    all: with the gateway at 1k req/s, one full collection every ~15 s, 89 ms long (gc
    callbacks), a pause that every request in flight waits out. Frozen, a full collection only
    walks what serving created: 2.2 ms. (Also keeps the pages of a forked worker shared, as
    CPython's documentation notes for ``gc.freeze``.)
    """
    gc.collect()
    gc.freeze()


async def _serve(server: Server, listeners: list[socket.socket], watch_parent: bool) -> bool:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_shutdown_on_signal, server)
        if watch_parent:
            nursery.start_soon(_shutdown_when_orphaned, server, os.getppid())
        clean = await server.serve(listeners)
        nursery.cancel_scope.cancel()
    return clean


async def _shutdown_on_signal(server: Server) -> None:
    with trio.open_signal_receiver(*_SHUTDOWN_SIGNALS) as signals:
        async for signum in signals:
            log.info("%s: draining (send it again to exit at once)", signal.Signals(signum).name)
            server.shutdown()
            # The second signal must work even if a handler hogs the interpreter, so it is
            # left to the kernel's default action rather than to this task.
            for sig in _SHUTDOWN_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)


async def _shutdown_when_orphaned(server: Server, parent_pid: int) -> None:
    """A worker whose supervisor died (SIGKILL leaves no time to forward anything) drains itself."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 (no event exists for "my parent died")
        await trio.sleep(1)
    log.warning("supervisor %d is gone: shutting down", parent_pid)
    server.shutdown()
