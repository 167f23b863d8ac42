"""With no configuration the gateway serves a mock backend in its own process, so
`trio-router run` on the gateway answers a streamed completion at once."""

from __future__ import annotations

from trio_router import App, bind_listener

from .backends import Registry
from .beside import serve_beside
from .config import BackendConfig


def start_embedded_mock(app: App, registry: Registry) -> None:
    from .. import mock_backend

    mock_app = App.from_spec(mock_backend.SPEC, mock_backend)
    listener = bind_listener("127.0.0.1", 0, 128, reuse_port=False)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    mock_backend.configure(mock_backend.MockConfig(name="embedded-mock"))
    models = mock_backend.CONFIG.models
    registry.add(BackendConfig(name="embedded-mock", url=url, models=models, health_url=f"{url}/health"))
    serve_beside(app, mock_app, listener, access_log=False, metrics_path="")
