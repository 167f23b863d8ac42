"""A sync handler that waits on I/O through the bridge, for stress/suspended_requests.py.

trio-router run --handlers suspended_app   (with stress/ on PYTHONPATH)
"""

from __future__ import annotations

import trio_router
from trio_router import App, Request

app = App()


@app.route("GET", "/wait", timeout=3600)
def wait(request: Request) -> dict[str, bool]:
    trio_router.sleep(float(request.query_string.decode() or "0"))
    return {"rested": True}
