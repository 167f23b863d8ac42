"""The server's own endpoints: the spec (/openapi.json, /openapi.yaml), its documentation
(/docs, Swagger UI from a packaged bundle, no CDN), liveness (/health) and readiness (/ready).

They are consulted only for paths no app route matches, so they never shadow an operation of
the spec (a spec that declares /health serves its own) and cost nothing on the hot path.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

import yaml

from .http.request import Request
from .http.response import Response
from .settings import Settings

_SWAGGER_FILES = {
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": b"text/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
    "favicon-32x32.png": b"image/png",
}

_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{docs}/swagger-ui.css">
<link rel="icon" type="image/png" href="{docs}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{docs}/swagger-ui-bundle.js"></script>
<script src="{docs}/swagger-ui-standalone-preset.js"></script>
<script src="{docs}/init.js"></script>
</body>
</html>
"""

_DOCS_INIT = """window.ui = SwaggerUIBundle({{
  url: {spec_url},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
}});
"""


def swagger_ui_directory() -> Path:
    import swagger_ui  # the swagger-ui-py package: only its static Swagger UI files are used

    return Path(swagger_ui.__file__).parent / "static"


class BuiltinEndpoints:
    """Path -> handler for the enabled built-ins; the documents are rendered once, at startup."""

    def __init__(self, settings: Settings, spec: dict[str, object] | None) -> None:
        self._handlers: dict[str, Callable[[Request], Response]] = {}
        if settings.health_path:
            self._handlers[settings.health_path] = lambda request: Response.json({"status": "ok"})
        if settings.ready_path:
            self._handlers[settings.ready_path] = _ready
        if spec is None:
            return
        if settings.openapi_path:
            as_json = Response(json.dumps(spec).encode(), headers=[("content-type", "application/json")])
            self._handlers[settings.openapi_path] = lambda request: as_json
        if settings.openapi_yaml_path:
            as_yaml = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True).encode()
            yaml_response = Response(as_yaml, headers=[("content-type", "application/yaml")])
            self._handlers[settings.openapi_yaml_path] = lambda request: yaml_response
        if settings.docs_path and (settings.openapi_path or settings.openapi_yaml_path):
            self._add_docs(settings.docs_path.rstrip("/"), settings.openapi_path or settings.openapi_yaml_path, spec)

    @property
    def paths(self) -> list[str]:
        return list(self._handlers)

    def find(self, path: str) -> Callable[[Request], Response] | None:
        return self._handlers.get(path)

    def _add_docs(self, docs: str, spec_url: str, spec: dict[str, object]) -> None:
        info = spec.get("info")
        title = str(info.get("title", "API")) if isinstance(info, dict) else "API"
        page = _DOCS_PAGE.format(title=html.escape(title), docs=docs).encode()
        init = _DOCS_INIT.format(spec_url=json.dumps(spec_url)).encode()
        self._handlers[docs] = lambda request: Response(page, headers=[("content-type", "text/html; charset=utf-8")])
        self._handlers[docs + "/init.js"] = lambda request: Response(
            init, headers=[("content-type", "text/javascript; charset=utf-8")]
        )
        directory = swagger_ui_directory()
        for name, media_type in _SWAGGER_FILES.items():
            self._handlers[f"{docs}/{name}"] = _static_file(directory / name, media_type)


def _ready(request: Request) -> Response:
    if request.draining:
        return Response.json({"status": "draining"}, status=503)
    return Response.json({"status": "ready"})


def _static_file(path: Path, media_type: bytes) -> Callable[[Request], Response]:
    """Read on first use (the bundle is ~2 MB; a server nobody browses never loads it), then cached."""
    cache: list[Response] = []

    def serve(request: Request) -> Response:
        if not cache:
            cache.append(
                Response(
                    path.read_bytes(), headers=[(b"content-type", media_type), (b"cache-control", b"max-age=86400")]
                )
            )
        return cache[0]

    return serve
