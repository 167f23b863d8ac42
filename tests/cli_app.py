"""A handlers module for the subprocess tests (``--handlers tests.cli_app``)."""

from __future__ import annotations

import os

import trio

from trio_router import App, Request

app = App()


@app.route("GET", "/pid")
def pid(request: Request) -> dict[str, int]:
    return {"pid": os.getpid()}


@app.route("GET", "/sleep")
async def sleep(request: Request) -> str:
    await trio.sleep(float(request.query_string.decode() or "60"))
    return "slept"
