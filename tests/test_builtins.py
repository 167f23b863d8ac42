"""The server's own endpoints, served by `trio-router run`'s app loading: the spec as JSON and
YAML, Swagger UI from the installed bundle, liveness and readiness; never shadowing a spec route."""

from __future__ import annotations

import httpx
import yaml

from tests.conftest import serve
from trio_router import Settings
from trio_router.runner import load_app


async def test_spec_documents_docs_and_probes() -> None:
    app = load_app(Settings())
    assert app.document is not None
    async with serve(app) as running, httpx.AsyncClient(base_url=running.url) as client:
        as_json = await client.get("/openapi.json")
        assert as_json.headers["content-type"] == "application/json"
        served = as_json.json()
        assert served["paths"].keys() == app.document.root["paths"].keys()
        assert "trio-router.500" in served["components"]["responses"]  # the server's own errors declared
        as_yaml = await client.get("/openapi.yaml")
        assert yaml.safe_load(as_yaml.content) == served
        page = await client.get("/docs")
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>trio-router reference Pet Store</title>" in page.text
        for script in ("/docs/swagger-ui-bundle.js", "/docs/swagger-ui-standalone-preset.js", "/docs/init.js"):
            assert f'src="{script}"' in page.text
            served = await client.get(script)
            assert served.status_code == 200 and served.headers["content-type"].startswith("text/javascript")
        assert '"/openapi.json"' in (await client.get("/docs/init.js")).text
        assert "https://" not in page.text  # nothing from a CDN
        assert (await client.get("/docs/swagger-ui.css")).headers["content-type"].startswith("text/css")
        assert (await client.get("/ready")).json() == {"status": "ready"}
        assert (await client.post("/openapi.json")).status_code == 405
        assert running.server.context is not None
        running.server.context.shutting_down = True  # what a drain sets: readiness must say no
        draining = await client.get("/ready")
        assert (draining.status_code, draining.json()) == (503, {"status": "draining"})
        running.server.context.shutting_down = False


async def test_spec_routes_win_and_paths_are_configurable() -> None:
    app = load_app(Settings(openapi_path="/spec", openapi_yaml_path="", docs_path="", ready_path="/readyz"))
    async with serve(app) as running, httpx.AsyncClient(base_url=running.url) as client:
        # The Pet Store declares GET /health itself: its operation answers, not the built-in.
        assert (await client.post("/health")).headers["allow"] == "GET, HEAD, OPTIONS"
        assert (await client.get("/spec")).status_code == 200
        for gone in ("/openapi.json", "/openapi.yaml", "/docs", "/ready"):
            assert (await client.get(gone)).status_code == 404
        assert (await client.get("/readyz")).status_code == 200
