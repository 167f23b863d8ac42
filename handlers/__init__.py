"""The apps shipped with trio-router: the reference Pet Store (petstore.py), the LLM gateway
(gateway/) and the mock model backend (mock_backend.py). Installed as ``trio_router_apps``
(``trio-router run --app gateway``); in a checkout also importable as ``handlers``."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def spec_path(name: str) -> Path:
    """A shipped spec: package data beside the apps once installed, specs/ in a checkout."""
    installed = _HERE / "specs" / name
    return installed if installed.exists() else _HERE.parent / "specs" / name
