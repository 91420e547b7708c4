"""OIP (KServe v2) health and metadata over gRPC and REST against a real runtime, with the unmodified
tritonclient clients: server/model liveness and readiness, server metadata, model metadata (tensors, versions),
and NOT_FOUND / 404 for an unknown model or version. Server and clients: tests/integration/conftest.py."""

from __future__ import annotations

from tests.integration.oip_inputs import CLASSES, C, H, W, _grpc_error


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
