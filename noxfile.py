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
    """Throughput against the bare trio + h11 floor (needs wrk: `apt-get install wrk`)."""
    session.install("-e", ".")
    session.run("python", "stress/bench.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate docs/configuration.md from the Settings model."""
    session.install("-e", ".")
    session.run("python", "-m", "trio_router.docgen", "docs/configuration.md")
