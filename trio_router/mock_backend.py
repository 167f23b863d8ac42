"""``trio-router mock-backend``: the mock model backend (specs/mock_backend.yaml served with
handlers/mock_backend.py), on ``--port`` and, for health checks, ``--port + 1`` (the babysitter
convention gateways probe)."""

from __future__ import annotations

import argparse

from .http.server import bind_listener
from .runner import AppLoadError, load_app, run_process
from .settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000); health also on port + 1")
    parser.add_argument("--name", default=None, help="backend name in replies and /health (default mock-<port>)")
    parser.add_argument("--models", default="mock-small,mock-large", help="comma-separated model ids served")
    parser.add_argument("--role", choices=["unified", "prefill", "decode"], default="unified")
    parser.add_argument("--tokens-per-second", type=float, default=50.0, help="streaming rate (0: no pacing)")
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added before every answer")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of requests answered 500 (0..1)")
    parser.add_argument(
        "--fault", default=None, help="a fault for every request, as X-Mock-Fault gives one (error, drop, hang, ...)"
    )
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=False)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.fail_rate <= 1 or args.tokens_per_second < 0 or not 0 < args.port < 65535:
        raise AppLoadError("mock-backend: --fail-rate must be in 0..1, --tokens-per-second >= 0, --port < 65535")
    from trio_router_apps import mock_backend as handlers  # the shipped app, configured from the flags

    models = [model.strip() for model in args.models.split(",") if model.strip()]
    handlers.configure(
        handlers.MockConfig(
            name=args.name or f"mock-{args.port}",
            models=models,
            role=args.role,
            tokens_per_second=args.tokens_per_second,
            first_token_delay=args.first_token_delay,
            latency=args.latency,
            fail_rate=args.fail_rate,
            fault=args.fault,
        )
    )
    spec = handlers.SPEC
    settings = Settings.model_validate(
        {"host": args.host, "port": args.port, "handlers": "trio_router_apps.mock_backend", "spec": str(spec),
         "access_log": args.access_log}
    )  # fmt: skip
    app = load_app(settings)
    health = bind_listener(settings.host, settings.port + 1, settings.backlog, reuse_port=False)
    return run_process(app, settings, extra_listeners=[health])
