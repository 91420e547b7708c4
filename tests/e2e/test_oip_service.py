"""The Open Inference Protocol inside the real BentoML service: unmodified tritonclient (gRPC and HTTP)
against `bentoml serve .`, sharing the runtime with /predict."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.e2e.conftest import Server, free_port, tiny_server
from tests.fixtures import encode_image, sample_image


@pytest.fixture(scope="module")
def oip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    grpc_port = free_port()
    with tiny_server(tmp_path_factory, "oip", grpc_port=grpc_port) as server:
        yield server, grpc_port


def _bytes_input(images: list[bytes], module) -> object:  # noqa: ANN001
    inp = module.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    return inp


def test_grpc_and_rest_match_predict(oip_server: tuple[Server, int]) -> None:
    server, grpc_port = oip_server
    images = [encode_image(sample_image(seed=i), "PNG") for i in range(8)]
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    h = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    assert g.is_server_live() and g.is_server_ready() and g.is_model_ready("tiny")
    assert h.is_server_live() and h.is_server_ready() and h.is_model_ready("tiny")
    meta = g.get_model_metadata("tiny", as_json=True)
    assert {i["name"] for i in meta["inputs"]} == {"image", "input"}
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "label"}

    gr = g.infer("tiny", [_bytes_input(images, grpcclient)])
    hr = h.infer("tiny", [_bytes_input(images, httpclient)])
    gp, hp = gr.as_numpy("probabilities"), hr.as_numpy("probabilities")
    assert gp.shape == (8, 10) and gr.get_response().model_version == "1"
    np.testing.assert_allclose(gp, hp, atol=1e-6)

    with server.client() as c:
        body = c.post("/predict", files={"image": ("x.png", images[3], "image/png")}, params={"top_k": 10}).json()
    scores = {t["label"]: t["score"] for t in body["top_k"]}
    expected = {f"class_{j}": float(gp[3, j]) for j in range(10)}
    assert scores == pytest.approx(expected, abs=1e-6)
    assert gr.as_numpy("label")[3].decode() == body["label"]

    pixels = np.zeros((2, 28, 28, 1), np.uint8)
    inp = grpcclient.InferInput("input", list(pixels.shape), "UINT8")
    inp.set_data_from_numpy(pixels)
    only_labels = g.infer("tiny", [inp], outputs=[grpcclient.InferRequestedOutput("label")])
    assert only_labels.as_numpy("probabilities") is None and only_labels.as_numpy("label").shape == (2,)


def test_errors_map_to_status_codes(oip_server: tuple[Server, int]) -> None:
    server, grpc_port = oip_server
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    h = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    img = [encode_image(sample_image(), "PNG")]
    with pytest.raises(InferenceServerException) as e:
        g.infer("nope", [_bytes_input(img, grpcclient)])
    assert e.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as e:
        h.infer("nope", [_bytes_input(img, httpclient)])
    assert e.value.status() == "404"
    bad = grpcclient.InferInput("input", [1, 5, 5, 1], "UINT8")
    bad.set_data_from_numpy(np.zeros((1, 5, 5, 1), np.uint8))
    with pytest.raises(InferenceServerException) as e:
        g.infer("tiny", [bad])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT" and "28" in e.value.message()
    with server.client() as c:
        text = c.get("/metrics").text
    assert text.count('endpoint="grpc:ModelInfer"') >= 1
    # REST requests are labelled by the route template that matched, not by their path
    assert 'imgserve_requests_total{endpoint="/v2/models/{name}/infer",protocol="http",status="404"}' in text
    assert "imgserve_requests_in_flight" in text


def test_config_and_statistics_across_workers(oip_server: tuple[Server, int]) -> None:
    """Statistics are summed over BentoML's worker processes: whichever worker answers, the counts are the
    traffic sent to all of them."""
    server, grpc_port = oip_server
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    h = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    assert h.get_model_config("tiny")["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 256
    before = h.get_inference_statistics("tiny")["model_stats"][0]
    images = [encode_image(sample_image(seed=i), "PNG") for i in range(3)]
    for _ in range(4):  # fresh connections: BentoML spreads them over its workers
        with server.client() as c:
            assert c.post("/predict", files={"image": ("x.png", images[0], "image/png")}).status_code == 200
        hc = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
        hc.infer("tiny", [_bytes_input(images, httpclient)])
        hc.close()
    g.infer("tiny", [_bytes_input(images, grpcclient)])
    for client in (h, g):
        stats = client.get_inference_statistics("tiny", as_json=True) if client is g else client.get_inference_statistics("tiny")
        after = stats["model_stats"][0]
        assert int(after["inference_count"]) - before["inference_count"] == 4 * (1 + 3) + 3
        success = int(after["inference_stats"]["success"]["count"]) - before["inference_stats"]["success"]["count"]
        assert success == 4 * 2 + 1
    index = g.get_model_repository_index(as_json=True)["models"]
    assert [(m["name"], m["state"]) for m in index] == [("tiny", "READY")]
