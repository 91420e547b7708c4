"""What the service puts into the uvicorn server BentoML's worker builds: our connection edge (protocol class,
header limit) and an HTTP keep-alive timeout longer than the idle timeout of common clients (so the client,
not the server, ends idle connections)."""

from __future__ import annotations

import httpx
import pytest
import uvicorn

from serving import uvicorn_config as keepalive
from serving.connection import ConnectionLimits, EdgeH11Protocol, EdgeProtocol, protocol_class
from serving.settings import ServeSettings


@pytest.fixture
def pristine_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the wrapper (and the module's state) after each test, whatever imported service.py before."""
    monkeypatch.setattr(uvicorn.Config, "__init__", uvicorn.Config.__init__)
    monkeypatch.setattr(keepalive, "_seconds", None)
    monkeypatch.setattr(keepalive, "_protocol", None)


def _config(**kw: object) -> uvicorn.Config:
    return uvicorn.Config(app=lambda scope, receive, send: None, **kw)  # type: ignore[arg-type]


@pytest.mark.usefixtures("pristine_config")
def test_applies_to_configs_built_afterwards_even_over_bentomls_default() -> None:
    assert keepalive.configure_uvicorn(120, argv=["worker", ".", "--fd", "3"]) is True
    assert _config(timeout_keep_alive=5).timeout_keep_alive == 120  # what BentoML's worker passes by default
    assert keepalive.configure_uvicorn(90, argv=[]) is True  # idempotent: no second wrapper, the new value
    assert _config().timeout_keep_alive == 90
    assert keepalive.effective_keep_alive() == 90


@pytest.mark.usefixtures("pristine_config")
def test_installs_the_connection_edge_with_its_limits() -> None:
    limits = ConnectionLimits(max_header_bytes=4096, header_timeout_s=3)
    keepalive.configure_uvicorn(120, limits, argv=[])
    config = _config()
    assert issubclass(config.http, EdgeProtocol) and config.http.limits == limits
    assert config.h11_max_incomplete_event_size == 4096
    assert ServeSettings(max_header_bytes=8192).connection_limits().max_header_bytes == 8192


@pytest.mark.usefixtures("pristine_config")
@pytest.mark.parametrize("argv", [["w", "--timeout-keep-alive", "30"], ["w", "--timeout-keep-alive=30"]])
def test_an_explicit_bentoml_flag_wins(argv: list[str]) -> None:
    assert keepalive.configure_uvicorn(120, argv=argv) is False
    assert _config(timeout_keep_alive=30).timeout_keep_alive == 30
    assert keepalive.effective_keep_alive() is None
    assert issubclass(_config().http, EdgeProtocol)  # the connection edge applies all the same


def test_parser_choice() -> None:
    from serving.connection_httptools import EdgeHttpToolsProtocol

    assert issubclass(protocol_class(ConnectionLimits()), EdgeHttpToolsProtocol)  # the serve extra installs httptools
    assert issubclass(protocol_class(ConnectionLimits(parser="h11")), EdgeH11Protocol)
    assert ServeSettings(http_parser="h11").connection_limits().parser == "h11"
    with pytest.raises(ValueError, match="unknown HTTP parser"):
        protocol_class(ConnectionLimits(parser="picohttp"))


def test_default_outlives_common_client_idle_timeouts() -> None:
    """httpx (5 s), aiohttp (15 s), AWS ALB / nginx upstreams (60 s), Go's http.Transport (90 s): each closes
    an idle connection before our server would, so none can start a request on a connection being closed."""
    default = ServeSettings().keep_alive_s
    assert default > (httpx.Limits().keepalive_expiry or 0)
    assert default > max(5, 15, 60, 90)
    assert ServeSettings(keep_alive_s=7).keep_alive_s == 7
