"""Start-up via ``imgserve serve`` with no model yet: alive but not ready, 503 + Retry-After, then ready
on its own once a version is published (the alias watch), without a restart."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from inference.registry import Registry
from tests.e2e.conftest import Server, running_server
from tests.fixtures import encode_image, register_tiny, sample_image

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("lifecycle")
    registry = Registry(tmp / "models")  # empty: model "tiny" has no versions yet
    with running_server(registry, tmp, via_cli=True, wait_ready=False, poll_interval_s=0.3) as srv:
        yield srv


def test_alive_but_not_ready_without_a_model(server: Server) -> None:
    with server.client() as client:
        assert client.get("/livez").status_code == 200
        assert client.get("/readyz").status_code == 503
        for resp in (
            client.post("/predict", content=encode_image(sample_image(), "PNG"), headers={"content-type": "image/png"}),
            client.get("/model"),
        ):
            assert resp.status_code == 503
            assert resp.json()["type"] == "not_ready"
            assert "no versions" in resp.json()["error"]
            assert resp.headers["retry-after"].isdigit()
    assert "no model to serve yet" in server.log_text()


def test_becomes_ready_when_a_version_is_published(server: Server) -> None:
    register_tiny(server.registry)
    t0 = time.monotonic()
    while httpx.get(server.url + "/readyz").status_code != 200:
        assert time.monotonic() - t0 < 10, server.log_text()[-2000:]
        time.sleep(0.05)
    resp = httpx.post(server.url + "/predict", content=encode_image(sample_image(), "PNG"),
                      headers={"content-type": "image/png"})
    assert resp.status_code == 200 and resp.json()["model"]["version"] == 1


def test_cli_ran_bentoml_with_our_port(server: Server) -> None:
    assert server.url.rsplit(":", 1)[1] in server.log_text()  # "listening on http://127.0.0.1:<port>"
