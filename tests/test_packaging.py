"""The wheel, installed outside the checkout, serves the shipped apps under our own names: no
top-level `handlers` package to collide with a user's, the specs as package data."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_cli import ROOT, ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(the wheel, a directory it is installed in alone, without its dependencies)."""
    build = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(build)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(build.glob("*.whl"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    yield wheel, target


def test_the_wheel_holds_our_names_every_subpackage_and_the_specs(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"trio_router", "trio_router_apps"}
    sources = {str(path.relative_to(ROOT)) for path in (ROOT / "trio_router").rglob("*.py")}
    assert sources <= set(names)  # no subpackage left out of pyproject's list
    apps = {
        "trio_router_apps/" + str(path.relative_to(ROOT / "handlers")) for path in (ROOT / "handlers").rglob("*.py")
    }
    assert apps <= set(names)
    assert {f"trio_router_apps/specs/{spec.name}" for spec in (ROOT / "specs").iterdir()} <= set(names)


def test_outside_the_checkout_run_serves_the_pet_store_and_the_gateway(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, target = installed
    env = {"PYTHONPATH": str(target), "PETSTORE_API_KEYS": "k"}
    where = subprocess.run(
        [sys.executable, "-c", "import trio_router, trio_router_apps; print(trio_router.__file__)"],
        cwd=tmp_path, env={**os.environ, **env}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(target))  # the installed copy, not the checkout
    petstore = ServerProcess(env=env, cwd=tmp_path)
    try:
        url = petstore.url()
        assert httpx.get(url + "/pets/1").json()["name"] == "Rex"
        assert httpx.get(url + "/openapi.json").json()["info"]["title"] == "trio-router reference Pet Store"
    finally:
        petstore.stop()
    gateway = ServerProcess("--app", "gateway", env=env, cwd=tmp_path)
    try:
        reply = httpx.post(
            gateway.url() + "/v1/chat/completions",
            json={"model": "mock-small", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
        )
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
    finally:
        gateway.stop()
