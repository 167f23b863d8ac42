"""Schemathesis against `trio-router run` serving the Pet Store: generated requests (examples,
boundary coverage, fuzzing, stateful sequences) must never get a 5xx or a response the spec
does not describe (status, content type, headers, body schema)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.test_cli import running

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
SECRET = "schemathesis-secret-long-enough-for-hs256"


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(SCHEMATHESIS), reason="schemathesis is not installed")
def test_schemathesis_finds_no_server_error_and_no_response_outside_the_spec(tmp_path: Path) -> None:
    env = {"PETSTORE_API_KEYS": "schemathesis-key", "PETSTORE_JWT_SECRET": SECRET}
    claims = {"sub": "schemathesis", "scope": "pets:write stats:read", "exp": int(time.time()) + 3600}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    with running("--no-access-log", env=env) as server:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--no-color",
                "run",
                server.url() + "/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                "25",
                "--seed",
                "20261122",
                "--header",
                f"Authorization: Bearer {token}",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "Selected: 21/21" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(SCHEMATHESIS), reason="schemathesis is not installed")
def test_schemathesis_against_the_gateway_and_its_embedded_mock(tmp_path: Path) -> None:
    """Generated OpenAI requests (the spec's examples reach a real backend, the rest are refused
    in OpenAI's error shape) never get a 5xx or a response the gateway's spec does not describe."""
    with running("--no-access-log", "--handlers", "handlers.gateway", "--spec", "specs/gateway.yaml") as server:
        result = subprocess.run(
            [SCHEMATHESIS, "--no-color", "run", server.url() + "/openapi.json", "--checks", CHECKS,
             "--max-examples", "25", "--seed", "20261122", "--report-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=600, check=False, env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "Selected: 7/7" in result.stdout
        assert "Examples" in result.stdout and "⏭  Examples" not in result.stdout  # the examples ran
        stats = httpx.get(server.url() + "/stats").json()["backends"][0]
        assert stats["requests"] > 0 and stats["failures"] == 0  # requests did reach the backend
