"""Which parser a server uses: the ``http`` setting resolved once, at start-up."""

from __future__ import annotations

from collections.abc import Callable

from .interface import ServerParser

ServerParserFactory = Callable[[int, int], ServerParser]  # (max_header_bytes, max_target_bytes) -> parser


class ParserUnavailable(RuntimeError):
    """``http: httptools`` without httptools installed."""


def _httptools_importable() -> bool:
    try:
        import httptools  # noqa: F401
    except ImportError:  # not installed, or a broken build: h11 serves
        return False
    return True


def resolve(setting: str) -> str:
    """``h11`` or ``httptools`` for the setting's value (``auto`` picks httptools if importable)."""
    if setting == "auto":
        return "httptools" if _httptools_importable() else "h11"
    if setting == "httptools" and not _httptools_importable():
        raise ParserUnavailable("http: httptools needs httptools installed: pip install 'trio-router[fast]'")
    return setting


def server_parser_factory(setting: str) -> ServerParserFactory:
    if resolve(setting) == "httptools":
        from .httptools_server import HttptoolsServer

        return HttptoolsServer
    from .h11_server import H11Server

    return H11Server
