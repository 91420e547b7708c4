"""OIP (KServe v2) errors over gRPC and REST against a real runtime, with the unmodified tritonclient clients:
unknown model or version (NOT_FOUND / 404), invalid inputs and outputs (INVALID_ARGUMENT / 400), malformed
REST bodies, and an unimplemented RPC. Server and clients: tests/integration/conftest.py."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.integration.oip_inputs import C, H, W, _grpc_error, _grpc_input, _http_input, _images, _pixels


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
        (b"[" * 100_000 + b"]" * 100_000, {}, "not valid JSON: nested too deeply"),  # was a RecursionError: 500
        (b'{"inputs": [' * 50_000, {"Inference-Header-Content-Length": "600000"}, "nested too deeply"),
        (b"[1, 2]", {}, "must be a JSON object"),
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
    index = f"http://{served.http_url}/v2/repository/index"
    for body in (b"[" * 30_000, b"[true]", b"{nope"):
        r = httpx.post(index, content=body)
        assert r.status_code == 400 and "repository index request" in r.json()["error"], r.text
    assert httpx.post(index, content=b'{"ready": true}').status_code == 200


def test_unimplemented_rpc(grpc_client) -> None:  # type: ignore[no-untyped-def]
    err = _grpc_error(lambda: grpc_client.load_model("tiny"))  # the repository load/unload extension
    assert err.status() == "StatusCode.UNIMPLEMENTED"


@pytest.mark.parametrize(
    ("method", "kind"),
    [("ModelInfer", "inference.ModelInferRequest"), ("ModelMetadata", "inference.ModelMetadataRequest")],
)
def test_a_message_that_does_not_parse_is_invalid_argument(served, method: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    """Raw bytes that are no protobuf message: INVALID_ARGUMENT naming the type (gRPC alone said UNKNOWN,
    "Unexpected <class 'google.protobuf.message.DecodeError'>"); the server goes on answering."""
    import grpc

    with grpc.insecure_channel(served.grpc_url) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            call(b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 10, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == f"the request is not a valid {kind} message"
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        assert live(b"", timeout=10) == b"\x08\x01"  # ServerLiveResponse(live=true)
