"""``trio-router run``: flags are generated from the Settings model, errors are one line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from . import mock_backend
from .app import App
from .http.server import ListenError
from .observability.logs import configure_logging
from .observability.otel import OtelUnavailable
from .runner import AppLoadError, load_app, run_process
from .settings import ConfigFileError, Settings
from .streaming.guardrails.sinks import SinkError
from .wire.choice import ParserUnavailable
from .wire.choice import resolve as resolve_parser

PROG = "trio-router"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    while get_origin(annotation) is not None:  # Annotated[float, ...]
        annotation = get_args(annotation)[0]
    return annotation


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        kind = _scalar_type(field.annotation)
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description} (default: {default}; env TRIO_ROUTER_{name.upper()})"
        if kind is bool:
            parser.add_argument(
                _flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            # Parsed as text and validated by the model, so errors read the same from flags and env.
            parser.add_argument(_flag(name), dest=name, default=None, metavar=name.upper(), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="OpenAPI-first HTTP/1.1 server on trio (h11, or httptools when installed)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="serve the app (default: the reference app in handlers/)")
    check = commands.add_parser("check", help="validate the spec and its handler bindings; exit 1 with the problems")
    routes = commands.add_parser("routes", help="print the route table: method, path, operationId, security, handler")
    for command in (run, check, routes):
        command.add_argument(
            "--config",
            type=Path,
            default=None,
            metavar="FILE",
            help="TOML or YAML file of settings (below environment variables and flags; env TRIO_ROUTER_CONFIG)",
        )
        _add_settings_flags(command)
    mock = commands.add_parser(
        "mock-backend", help="serve a mock OpenAI-compatible model backend (for gateways: streams, usage, faults)"
    )
    mock_backend.add_arguments(mock)
    usage = commands.add_parser("usage", help="summarise the gateway's usage records per tenant, model and day")
    usage.add_argument("source", help="a usage JSONL file, or redis://host:port/db for a stream")
    usage.add_argument("--stream", default="trio-router:usage", help="the stream name (redis sources)")
    usage.add_argument("--format", choices=["table", "json"], default="table")
    diagnose = commands.add_parser("diagnose", help="measure what a suspended sync handler costs in memory")
    diagnose.add_argument("--count", type=int, default=10_000, help="handlers suspended at once (default 10000)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name) for name in Settings.model_fields if getattr(args, name) is not None}
    for name, value in overrides.items():
        annotation = Settings.model_fields[name].annotation
        if get_origin(annotation) in (dict, list) or (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        ):
            try:
                overrides[name] = json.loads(value)
            except ValueError as exc:
                raise ConfigFileError(f"{_flag(name)} takes JSON: {exc}") from None
    config = args.config or (Path(os.environ["TRIO_ROUTER_CONFIG"]) if os.environ.get("TRIO_ROUTER_CONFIG") else None)
    return Settings.load(config, **overrides)


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown setting {name!r}")
            continue
        where = f"{_flag(name)} / TRIO_ROUTER_{name.upper()}" if name in Settings.model_fields else "settings"
        problems.append(f"invalid setting {where}: {item['msg']}")
    return "; ".join(problems)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "diagnose":
        from .runtime.memory import measure_suspended_handlers

        print(f"suspending {args.count} handlers ...", file=sys.stderr)
        print(measure_suspended_handlers(args.count).render())
        return 0
    if args.command == "usage":
        from trio_router_apps.gateway.tenancy.usage_report import run as usage_report  # the gateway's, on use

        code: int = usage_report(args)
        return code
    if args.command == "mock-backend":
        configure_logging(Settings.model_validate({}))
        try:
            return mock_backend.run(args)
        except (ListenError, AppLoadError) as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
    try:
        settings = settings_from(args)
    except ValidationError as exc:
        print(f"{PROG}: {_describe(exc)}", file=sys.stderr)
        return 2
    except ConfigFileError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings)
    try:
        resolve_parser(settings.http)  # a missing httptools is a one-line error, not a traceback per worker
        app = load_app(settings)
        if args.command == "check":
            served_by = settings.handlers or f"the {settings.app or 'petstore'} app"
            print(f"ok: {len(app.routes)} operations served by {served_by}" + _spec_of(app))
            return 0
        if args.command == "routes":
            print(route_table(app))
            return 0
        if settings.workers > 1:
            from .workers import Supervisor

            return Supervisor(settings).run()
        return run_process(app, settings)
    except (ListenError, AppLoadError, SinkError, OtelUnavailable, ParserUnavailable) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1


def _spec_of(app: App) -> str:
    return f" from {app.document.uri.removeprefix('file://')}" if app.document is not None else " (routes made in code)"


def route_table(app: App) -> str:
    """The routes as aligned text columns, in the order the spec declares them."""
    rows = [("METHOD", "PATH", "OPERATION", "SECURITY", "HANDLER")]
    for route in app.routes:
        security = "-"
        if route.spec is not None and route.spec.security:
            security = " | ".join(
                " + ".join(scheme for scheme, _ in requirement) or "anonymous" for requirement in route.spec.security
            )
        handler = route.spec.handler_name if route.spec is not None else f"{route.handler.__module__}:{route.operation}"
        rows.append((route.method, route.path, route.operation, security, handler))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


if __name__ == "__main__":
    sys.exit(main())
