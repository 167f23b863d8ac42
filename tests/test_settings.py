"""The settings model, its generated reference, and the sans-IO protocol helpers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from trio_router.docgen import render
from trio_router.errors import HTTPError
from trio_router.http.protocol import check_request_head, client_timeout, invalid_app_header
from trio_router.settings import ConfigFileError, Settings
from trio_router.wire.interface import RequestHead
from trio_router.wire.rules import oversized_head

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_matches_the_model() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), "run `nox -s docs`"


def test_environment_overrides_defaults_and_init_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIO_ROUTER_PORT", "9000")
    assert Settings().port == 9000
    assert Settings(port=9100).port == 9100


def test_target_limit_must_fit_in_the_head_limit() -> None:
    with pytest.raises(ValidationError, match="max_target_bytes"):
        Settings(max_header_bytes=1000, max_target_bytes=2000)


def _request(*headers: tuple[str, str], target: str = "/") -> RequestHead:
    pairs = [(name.encode(), value.encode()) for name, value in [("host", "a"), *headers]]
    return RequestHead(b"POST", target.encode(), pairs, b"1.1")


def test_check_request_head_statuses() -> None:
    assert check_request_head(_request(), 1000, 100, 10) == (0, None)
    assert check_request_head(_request(("content-length", "7")), 1000, 100, 10) == (7, None)
    assert check_request_head(_request(("transfer-encoding", "chunked")), 1000, 100, 10)[0] is None
    timeout_header = (b"x-request-timeout", b"2.5")
    assert check_request_head(_request(("x-request-timeout", "2.5")), 1000, 100, 10) == (0, timeout_header)
    assert client_timeout(timeout_header) == 2.5
    assert client_timeout(None) == math.inf
    cases = [
        (_request(target="/" + "a" * 200), 414),
        (_request(("x", "a" * 2000)), 431),
        (_request(("content-length", "11")), 413),
        (_request(("content-length", "1"), ("transfer-encoding", "chunked")), 400),
    ]
    for request, status in cases:
        with pytest.raises(HTTPError) as raised:
            check_request_head(request, 1000, 100, 10)
        assert raised.value.status == status


def test_an_oversized_head_with_an_endless_request_line_is_414() -> None:
    assert oversized_head(b"GET /" + b"a" * 5000, 1000).status == 414
    assert oversized_head(b"GET / HTTP/1.1\r\nx: " + b"a" * 5000, 1000).status == 431


@pytest.mark.parametrize("value", [b"abc", b"-1", b"0", b"nan", b"inf"])
def test_client_timeout_rejects_nonsense(value: bytes) -> None:
    with pytest.raises(HTTPError):
        client_timeout((b"request-timeout", value))


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ((b"x-ok", b"a value\twith tab"), True),
        ((b"x-split", b"a\r\nset-cookie: evil"), False),
        ((b"x-nul", b"a\x00b"), False),
        ((b"bad name", b"v"), False),
        ((b"", b"v"), False),
    ],
)
def test_app_headers_that_would_split_the_response_are_caught(header: tuple[bytes, bytes], ok: bool) -> None:
    found = invalid_app_header([(b"content-type", b"text/plain"), header])
    assert (found is None) is ok


def test_precedence_defaults_file_environment_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "server.toml"
    config.write_text('port = 7000\nrequest-timeout = 12.5\nkeepalive_timeout = 3\nhandlers = "from.file"\n')
    monkeypatch.setenv("TRIO_ROUTER_KEEPALIVE_TIMEOUT", "4")
    monkeypatch.setenv("TRIO_ROUTER_HANDLERS", "from.env")
    settings = Settings.load(config, handlers="from.flag")
    assert settings.header_timeout == 10.0  # default
    assert (settings.port, settings.request_timeout) == (7000, 12.5)  # file
    assert settings.keepalive_timeout == 4  # environment beats the file
    assert settings.handlers == "from.flag"  # the flag beats everything
    assert Settings().port == 8080  # the file applies only where it was loaded


def test_yaml_config_and_its_errors(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("workers: 3\nmax-body-bytes: 2048\n")
    assert (Settings.load(config).workers, Settings.load(config).max_body_bytes) == (3, 2048)
    config.write_text("workers: [unclosed\n")
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        Settings.load(config)
    with pytest.raises(ConfigFileError, match="cannot read config file"):
        Settings.load(tmp_path / "missing.toml")
    config.write_text("no_such_setting: 1\n")
    with pytest.raises(ValidationError, match="no_such_setting"):
        Settings.load(config)
