"""The bare route for the floor comparison: the same bytes the floor sends, no JSON encoding,
so the ratio measures the framework and nothing the handler does.

    trio-router run --handlers stress.bare_app
"""

from __future__ import annotations

from trio_router import App, Request, Response

app = App()

_HEALTH = Response(b'{"status":"ok"}', headers=[("content-type", "application/json")])


@app.route("GET", "/health")
def health(request: Request) -> Response:
    return _HEALTH
