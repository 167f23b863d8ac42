"""trio-router: an OpenAPI-first HTTP/1.1 server on trio + h11."""

from .app import App, Route
from .http.protocol import HTTPError
from .http.request import Request
from .http.response import Response, problem
from .settings import Settings

__all__ = ["App", "HTTPError", "Request", "Response", "Route", "Settings", "problem"]
__version__ = "0.1.0"
