"""Overload against a genuinely slow model and a tiny queue: only 200 or 503 + Retry-After, never 500/504/429."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Server, tiny_server
from tests.fixtures import encode_image, sample_image

pytestmark = pytest.mark.e2e

IMAGE = encode_image(sample_image((64, 64), "L"), "PNG")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # 4 full-resolution 3x3 conv layers at 128x128: ~15-20 ms of real ONNX Runtime work per image on one core.
    with tiny_server(
        tmp_path_factory,
        "overload",
        model={"height": 128, "width": 128, "conv_layers": 4, "filters": 64},
        max_queue=2,
        lanes=1,
        decode_threads=1,
        max_batch_size=4,
        poll_interval_s=0,
    ) as srv:
        yield srv


async def burst(url: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
        return await asyncio.gather(
            *(client.post("/predict", content=IMAGE, headers={"content-type": "image/png"}) for _ in range(n))
        )


def check_shed(responses: list[httpx.Response]) -> Counter[int]:
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 503}, statuses
    for r in responses:
        if r.status_code == 503:
            assert r.json()["type"] == "overloaded", r.text
            assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1
        else:
            assert r.json()["model"]["name"] == "tiny"
    return statuses


def test_tiny_queue_sheds_with_503_and_retry_after(server: Server) -> None:
    responses = asyncio.run(burst(server.url, 32))
    statuses = check_shed(responses)
    assert statuses[200] >= 1 and statuses[503] >= 1, statuses
    messages = {r.json()["error"] for r in responses if r.status_code == 503}
    assert any("queue is full" in m for m in messages), (
        messages
    )  # the batcher's own bound, not only admission


def test_burst_of_256_answers_only_200_or_503(server: Server) -> None:
    statuses = check_shed(asyncio.run(burst(server.url, 256)))
    assert statuses[200] >= 1 and statuses[503] >= 1, statuses


def test_serves_normally_after_overload(server: Server) -> None:
    with server.client() as client:
        resp = client.post("/predict", content=IMAGE, headers={"content-type": "image/png"})
        assert resp.status_code == 200
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
    assert 'imgserve_requests_total{endpoint="/predict",protocol="http",status="503"}' in metrics
    assert 'status="500"' not in metrics and 'http_response_code="504"' not in metrics
    assert "Traceback" not in server.log_text()
