"""Schemathesis against `trio-router run` serving the Pet Store and the gateway: generated
requests (examples, boundary coverage, fuzzing, stateful sequences) go through every check
schemathesis has (its default): no 5xx, no status, content type, header or body the served
spec does not describe, valid data accepted, invalid data and bad credentials refused. The
few exceptions, each a case where schemathesis sends valid bytes meaning invalid data, are in
tests/schemathesis/*.toml with their reasons."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import pytest
import yaml

from tests.test_cli import running

SCHEMATHESIS = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
CONFIGS = Path(__file__).parent / "schemathesis"
SECRET = "schemathesis-secret-long-enough-for-hs256"


def schemathesis(url: str, config: str, report_dir: Path, env: dict[str, str] | None = None) -> str:
    """schemathesis' output over ``url``'s spec with tests/schemathesis/``config``; fails the test on any failure."""
    result = subprocess.run(
        [SCHEMATHESIS, "--no-color", "--config-file", str(CONFIGS / config), "run", url + "/openapi.json",
         "--max-examples", "25", "--seed", "20261122", "--report-dir", str(report_dir)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": "", **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(SCHEMATHESIS), reason="schemathesis is not installed")
def test_schemathesis_finds_nothing_the_pet_stores_served_spec_does_not_describe(tmp_path: Path) -> None:
    env = {"PETSTORE_API_KEYS": "schemathesis-key", "PETSTORE_JWT_SECRET": SECRET}
    claims = {"sub": "schemathesis", "scope": "pets:write stats:read", "exp": int(time.time()) + 3600}
    credentials = {"PETSTORE_API_KEY": "schemathesis-key", "PETSTORE_TOKEN": jwt.encode(claims, SECRET, "HS256")}
    with running("--no-access-log", env=env) as server:
        output = schemathesis(server.url(), "petstore.toml", tmp_path, credentials)
    assert "Selected: 21/21" in output
    assert "✅ Stateful" in output and "✅ Fuzzing" in output


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(SCHEMATHESIS), reason="schemathesis is not installed")
def test_schemathesis_against_the_gateway_and_its_embedded_mock(tmp_path: Path) -> None:
    """Generated OpenAI requests (the spec's examples reach a real backend, the rest are refused
    in OpenAI's error shape) never get a 5xx or a response the gateway's spec does not describe;
    with a tenant configured, a request without its key or with a wrong one is refused."""
    key = "sk-tr-schemathesis"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "embedded_mock": True,
                "usage": {"sink": "none"},
                "operations_access": "public",
                "tenants": [{"name": "st", "keys": [{"id": "st", "sha256": hashlib.sha256(key.encode()).hexdigest()}]}],
            }
        )
    )
    args = ("--no-access-log", "--handlers", "handlers.gateway", "--spec", "specs/gateway.yaml")
    with running(*args, env={"GATEWAY_CONFIG": str(config)}) as server:
        output = schemathesis(server.url(), "gateway.toml", tmp_path, {"GATEWAY_KEY": key})
        assert "Selected: 7/7" in output
        assert "Examples" in output and "⏭  Examples" not in output  # the examples ran
        stats = httpx.get(server.url() + "/stats").json()["backends"][0]
        assert stats["requests"] > 0 and stats["failures"] == 0  # requests did reach the backend
