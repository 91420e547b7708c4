"""OIP (KServe v2) inference over gRPC and REST against a real runtime, with the unmodified tritonclient
clients: the same probabilities as ``runtime.classify_images`` over every protocol and encoding (BYTES images,
UINT8/FP32 pixels, binary and JSON tensors, compression), requested outputs and top-k classification, plain
KServe v2 JSON, and gRPC's typed ``contents``. Server and clients: tests/integration/conftest.py."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from serving.oip_grpc import infer_images
from tests.integration.oip_inputs import CLASSES, C, H, W, _grpc_input, _http_input, _images, _pixels


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
