"""OIP (KServe v2) over gRPC and REST against a real runtime, with the unmodified tritonclient clients."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inference.registry import Registry
from serving.oip_grpc import infer_images
from serving.settings import ServeSettings
from tests.fixtures import encode_image, register_tiny, sample_image
from tests.integration.oip_harness import OipTestServer

H, W, C, CLASSES = 28, 28, 1, 10


def _settings(root: Path, **kw: object) -> ServeSettings:
    base: dict[str, object] = dict(
        models_dir=root, model="tiny", lanes=2, decode_threads=2, poll_interval_s=0, max_batch_images=16
    )
    return ServeSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OipTestServer]:
    root = tmp_path_factory.mktemp("models")
    register_tiny(Registry(root))
    server = OipTestServer(_settings(root)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def grpc_client(served: OipTestServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(served.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(served: OipTestServer) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(served.http_url)
    yield client
    client.close()


def _images(n: int) -> np.ndarray:
    return np.array([encode_image(sample_image(seed=i), "PNG") for i in range(n)], dtype=np.object_)


def _pixels(n: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(n, H, W, C), dtype=np.uint8)


def _grpc_input(name: str, data: np.ndarray, datatype: str) -> grpcclient.InferInput:
    inp = grpcclient.InferInput(name, list(data.shape), datatype)
    return inp.set_data_from_numpy(data)


def _http_input(name: str, data: np.ndarray, datatype: str, binary: bool = True) -> httpclient.InferInput:
    inp = httpclient.InferInput(name, list(data.shape), datatype)
    inp.set_data_from_numpy(data, binary_data=binary)
    return inp


def _grpc_error(call) -> InferenceServerException:  # type: ignore[no-untyped-def]
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value


# ---- health and metadata -------------------------------------------------------------------------
def test_health(grpc_client, http_client) -> None:  # type: ignore[no-untyped-def]
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert http_client.is_server_live() and http_client.is_server_ready()
    assert grpc_client.is_model_ready("tiny") and grpc_client.is_model_ready("tiny", "1")
    assert http_client.is_model_ready("tiny") and http_client.is_model_ready("tiny", "1")
    assert not http_client.is_model_ready("nope") and not http_client.is_model_ready("tiny", "7")
    err = _grpc_error(lambda: grpc_client.is_model_ready("nope"))
    assert err.status() == "StatusCode.NOT_FOUND" and "unknown model 'nope'" in err.message()


def test_server_metadata(grpc_client, http_client) -> None:  # type: ignore[no-untyped-def]
    g = grpc_client.get_server_metadata(as_json=True)
    h = http_client.get_server_metadata()
    assert g["name"] == h["name"] == "imgserve"
    assert g["version"] == h["version"] and "binary_tensor_data" in h["extensions"]


def test_model_metadata(grpc_client, http_client) -> None:  # type: ignore[no-untyped-def]
    g = grpc_client.get_model_metadata("tiny", as_json=True)
    h = http_client.get_model_metadata("tiny", "1")
    for meta in (g, h):
        assert meta["name"] == "tiny" and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
        inputs = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]}
        outputs = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in meta["outputs"]}
        assert inputs == {"image": ("BYTES", [-1]), "input": ("UINT8", [-1, H, W, C])}
        assert outputs == {"probabilities": ("FP32", [-1, CLASSES]), "label": ("BYTES", [-1])}
    err = _grpc_error(lambda: grpc_client.get_model_metadata("tiny", "2"))
    assert err.status() == "StatusCode.NOT_FOUND" and "version '2' is not served" in err.message()
    err = _grpc_error(lambda: http_client.get_model_metadata("nope"))
    assert err.status() == "404" and "unknown model 'nope'" in err.message()


# ---- inference -----------------------------------------------------------------------------------
def test_same_image_same_probabilities_everywhere(served, grpc_client, http_client) -> None:  # type: ignore[no-untyped-def]
    images = _images(1)
    direct = served.call(served.runtime.classify_images(list(images)))
    g = grpc_client.infer("tiny", [_grpc_input("image", images, "BYTES")])
    h = http_client.infer("tiny", [_http_input("image", images, "BYTES")])
    outputs = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("probabilities", "label")]
    j = http_client.infer("tiny", [_http_input("image", images, "BYTES")], outputs=outputs)
    for result in (g, h, j):
        probs = result.as_numpy("probabilities")
        assert probs.dtype == np.float32 and probs.shape == (1, CLASSES)
        np.testing.assert_array_equal(probs, direct.probabilities)
        label = result.as_numpy("label")[0]
        assert (label.decode() if isinstance(label, bytes) else label) == direct.labels()[0]
    assert g.get_response().model_version == "1" and h.get_response()["model_version"] == "1"
    probs, labels, version = infer_images(grpc_client, "tiny", list(_images(3)))  # the scripts' helper
    assert probs.shape == (3, CLASSES) and version == "1" and labels[0] == direct.labels()[0]
    np.testing.assert_array_equal(probs[:1], direct.probabilities)


def test_batch_of_8_bytes_and_uint8(served, grpc_client, http_client) -> None:  # type: ignore[no-untyped-def]
    images, pixels = _images(8), _pixels(8)
    by_image = served.call(served.runtime.classify_images(list(images))).probabilities
    by_pixels = served.call(served.runtime.classify_pixels(pixels)).probabilities
    normalised = (
        pixels.astype(np.float32) / 255.0
    )  # the tiny model's preprocessing: scale 1/255, mean 0, std 1
    cases = [
        (grpc_client.infer("tiny", [_grpc_input("image", images, "BYTES")]), by_image),
        (grpc_client.infer("tiny", [_grpc_input("input", normalised, "FP32")]), by_pixels),
        (http_client.infer("tiny", [_http_input("input", normalised, "FP32")]), by_pixels),
        (grpc_client.infer("tiny", [_grpc_input("image", images.reshape(8, 1), "BYTES")], "1"), by_image),
        (grpc_client.infer("tiny", [_grpc_input("input", pixels, "UINT8")]), by_pixels),
        (http_client.infer("tiny", [_http_input("image", images, "BYTES")]), by_image),
        (http_client.infer("tiny", [_http_input("input", pixels, "UINT8")], "1"), by_pixels),
        (http_client.infer("tiny", [_http_input("input", pixels[:2], "UINT8", binary=False)]), by_pixels[:2]),
        (
            http_client.infer(
                "tiny",
                [_http_input("image", images, "BYTES")],
                request_compression_algorithm="gzip",
                response_compression_algorithm="gzip",
            ),
            by_image,
        ),
        (
            http_client.infer(
                "tiny", [_http_input("input", pixels, "UINT8")], request_compression_algorithm="deflate"
            ),
            by_pixels,
        ),
        (
            grpc_client.infer("tiny", [_grpc_input("input", pixels, "UINT8")], compression_algorithm="gzip"),
            by_pixels,
        ),
    ]
    for result, expected in cases:
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=0, atol=1e-6)
        assert result.as_numpy("label").shape == (expected.shape[0],)


def test_requested_output_filtering(grpc_client, http_client) -> None:  # type: ignore[no-untyped-def]
    pixels = _pixels(3)
    inp_g, inp_h = _grpc_input("input", pixels, "UINT8"), _http_input("input", pixels, "UINT8")
    g = grpc_client.infer("tiny", [inp_g], outputs=[grpcclient.InferRequestedOutput("label")])
    h = http_client.infer("tiny", [inp_h], outputs=[httpclient.InferRequestedOutput("label")])
    for result in (g, h):
        assert result.as_numpy("probabilities") is None and result.as_numpy("label").shape == (3,)
    g = grpc_client.infer("tiny", [inp_g], outputs=[grpcclient.InferRequestedOutput("probabilities")])
    assert g.as_numpy("label") is None and g.as_numpy("probabilities").shape == (3, CLASSES)
    # classification extension: top-k "score:index:label"
    g = grpc_client.infer(
        "tiny", [inp_g], outputs=[grpcclient.InferRequestedOutput("probabilities", class_count=3)]
    )
    h = http_client.infer(
        "tiny", [inp_h], outputs=[httpclient.InferRequestedOutput("probabilities", class_count=3)]
    )
    for result in (g, h):
        top = result.as_numpy("probabilities")
        assert top.shape == (3, 3)
        score, index, label = top[0, 0].decode().split(":")
        assert label == f"class_{index}" and 0 < float(score) <= 1


def test_json_only_request(served) -> None:  # type: ignore[no-untyped-def]
    """Plain KServe v2 JSON (no binary extension): nested UINT8 data and base64 images."""
    url = f"http://{served.http_url}/v2/models/tiny/infer"
    pixels = _pixels(1)
    image = _images(1)[0]
    r1 = httpx.post(
        url,
        json={
            "id": "a1",
            "inputs": [
                {"name": "input", "shape": [1, H, W, C], "datatype": "UINT8", "data": pixels.tolist()}
            ],
        },
    )
    r2 = httpx.post(
        url,
        json={
            "inputs": [
                {
                    "name": "image",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"content_type": "base64"},
                    "data": [base64.b64encode(image).decode()],
                }
            ]
        },
    )
    assert r1.status_code == 200 and r2.status_code == 200, (r1.text, r2.text)
    body = r1.json()
    assert body["id"] == "a1" and body["model_name"] == "tiny" and body["model_version"] == "1"
    probs = {o["name"]: o for o in body["outputs"]}["probabilities"]
    assert probs["shape"] == [1, CLASSES] and probs["datatype"] == "FP32" and len(probs["data"]) == CLASSES
    direct = served.call(served.runtime.classify_images([image])).probabilities
    got = {o["name"]: o for o in r2.json()["outputs"]}["probabilities"]["data"]
    np.testing.assert_array_equal(np.array(got, dtype=np.float32), direct[0])


# ---- errors --------------------------------------------------------------------------------------
def test_unknown_model_and_version(grpc_client, http_client) -> None:  # type: ignore[no-untyped-def]
    pixels = _pixels(1)
    for model, version, text in (
        ("nope", "", "unknown model 'nope'"),
        ("tiny", "9", "version '9' is not served"),
    ):
        g = _grpc_error(
            lambda m=model, v=version: grpc_client.infer(m, [_grpc_input("input", pixels, "UINT8")], v)
        )
        h = _grpc_error(
            lambda m=model, v=version: http_client.infer(m, [_http_input("input", pixels, "UINT8")], v)
        )
        assert g.status() == "StatusCode.NOT_FOUND" and text in g.message()
        assert h.status() == "404" and text in h.message()


@pytest.mark.parametrize(
    ("name", "data", "datatype", "text"),
    [
        ("pixels", np.zeros((1, H, W, C), np.uint8), "UINT8", "unknown input 'pixels'"),
        (
            "input",
            np.zeros((1, H, W, C), np.int32),
            "INT32",
            "must be UINT8 pixels (or FP32, normalised), got INT32",
        ),
        (
            "input",
            np.zeros((2, 32, 32, C), np.uint8),
            "UINT8",
            f"must be shaped [N, {H}, {W}, {C}], got [2, 32, 32, 1]",
        ),
        ("image", np.zeros((1, 4), np.float32), "FP32", "input 'image' must be BYTES"),
        (
            "image",
            np.array([[b"x", b"y"]], dtype=object),
            "BYTES",
            "must be shaped [N] or [N, 1], got [1, 2]",
        ),
        ("image", np.array([b"not an image"], dtype=object), "BYTES", "not a recognised image"),
        ("image", _images(1).repeat(17), "BYTES", "holds 17 rows; the limit is 16"),
    ],
)
def test_invalid_input(grpc_client, http_client, name, data, datatype, text) -> None:  # type: ignore[no-untyped-def]
    g = _grpc_error(lambda: grpc_client.infer("tiny", [_grpc_input(name, data, datatype)]))
    h = _grpc_error(lambda: http_client.infer("tiny", [_http_input(name, data, datatype)]))
    assert g.status() == "StatusCode.INVALID_ARGUMENT" and text in g.message(), g.message()
    assert h.status() == "400" and text in h.message(), h.message()


def test_invalid_output_and_malformed_body(served, grpc_client, http_client) -> None:  # type: ignore[no-untyped-def]
    inp = [_grpc_input("input", _pixels(1), "UINT8")]
    g = _grpc_error(
        lambda: grpc_client.infer("tiny", inp, outputs=[grpcclient.InferRequestedOutput("logits")])
    )
    assert g.status() == "StatusCode.INVALID_ARGUMENT" and "unknown output 'logits'" in g.message()
    url = f"http://{served.http_url}/v2/models/tiny/infer"
    bad = [
        (b"{not json", {}, "not valid JSON"),
        (json.dumps({"inputs": []}).encode(), {}, "non-empty 'inputs'"),
        (
            json.dumps(
                {"inputs": [{"name": "input", "shape": [1, H, W, C], "datatype": "UINT8", "data": [1, 2]}]}
            ).encode(),
            {},
            f"needs {H * W * C} values, got 2",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, H, W, C],
                            "datatype": "UINT8",
                            "parameters": {"binary_data_size": 10},
                        }
                    ]
                }
            ).encode(),
            {},
            "does not fit the binary data",
        ),
    ]
    for body, headers, text in bad:
        r = httpx.post(url, content=body, headers=headers)
        assert r.status_code == 400 and text in r.json()["error"], r.text


def test_unimplemented_rpc(grpc_client) -> None:  # type: ignore[no-untyped-def]
    err = _grpc_error(lambda: grpc_client.load_model("tiny"))  # the repository load/unload extension
    assert err.status() == "StatusCode.UNIMPLEMENTED"


def test_grpc_typed_contents(served) -> None:  # type: ignore[no-untyped-def]
    """Clients other than tritonclient may send ``contents`` instead of ``raw_input_contents``."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    pixels, images = _pixels(2), _images(2)
    tensor = pb.ModelInferRequest.InferInputTensor
    with grpc.insecure_channel(served.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        by_pixels = stub.ModelInfer(
            pb.ModelInferRequest(
                model_name="tiny",
                inputs=[
                    tensor(
                        name="input",
                        datatype="UINT8",
                        shape=[2, H, W, C],
                        contents=pb.InferTensorContents(uint_contents=pixels.reshape(-1).tolist()),
                    )
                ],
            )
        )
        by_image = stub.ModelInfer(
            pb.ModelInferRequest(
                model_name="tiny",
                id="r7",
                inputs=[
                    tensor(
                        name="image",
                        datatype="BYTES",
                        shape=[2],
                        contents=pb.InferTensorContents(bytes_contents=list(images)),
                    )
                ],
            )
        )
    assert by_image.id == "r7" and by_image.model_version == "1"
    for response, expected in (
        (by_pixels, served.call(served.runtime.classify_pixels(pixels)).probabilities),
        (by_image, served.call(served.runtime.classify_images(list(images))).probabilities),
    ):
        assert [o.name for o in response.outputs] == ["probabilities", "label"]
        probs = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, CLASSES)
        np.testing.assert_array_equal(probs, expected)
