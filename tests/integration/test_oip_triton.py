"""Triton's extensions over gRPC and REST with the unmodified tritonclient: model config (the real batcher
settings), statistics (counted by the real batcher), the repository index, and gRPC server reflection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inference.registry import Registry
from serving.settings import ServeSettings
from tests.fixtures import encode_image, register_tiny, sample_image
from tests.integration.oip_harness import OipTestServer

NAME = "triton-tiny"  # a name of its own: the statistics counters are per process


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OipTestServer]:
    root = tmp_path_factory.mktemp("models")
    registry = Registry(root)
    register_tiny(registry, NAME)
    register_tiny(registry, "on-the-shelf", seed=1)  # in the registry, not served
    settings = ServeSettings(
        models_dir=root, model=NAME, lanes=3, decode_threads=2, poll_interval_s=0, max_batch_images=16,
        max_batch_size=8, max_wait_ms=2.0, max_queue=77, timeout_s=4.0, auto_batch=False, workers=1,
    )
    server = OipTestServer(settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clients(served: OipTestServer) -> Iterator[tuple[Any, Any]]:
    g, h = grpcclient.InferenceServerClient(served.grpc_url), httpclient.InferenceServerClient(served.http_url)
    yield g, h
    g.close()
    h.close()


def _infer(client: Any, module: Any, n: int, **kw: Any) -> Any:
    data = np.array([encode_image(sample_image(seed=i), "PNG") for i in range(n)], dtype=np.object_)
    inp = module.InferInput("image", [n], "BYTES")
    inp.set_data_from_numpy(data)
    return client.infer(NAME, [inp], **kw)


def test_model_config_is_the_same_over_both_protocols_and_reflects_the_batcher(clients: tuple[Any, Any]) -> None:
    g, h = clients
    over_grpc = g.get_model_config(NAME, as_json=True)["config"]
    over_http = h.get_model_config(NAME)
    assert over_http["name"] == NAME and over_http["platform"] == "onnxruntime_onnx"
    assert over_http["max_batch_size"] == 16
    batching = over_http["dynamic_batching"]
    assert batching["max_queue_delay_microseconds"] == 2000 and batching["preferred_batch_size"] == [8]
    assert batching["default_queue_policy"]["max_queue_size"] == 77
    assert batching["default_queue_policy"]["default_timeout_microseconds"] == 4_000_000
    assert over_http["instance_group"][0]["count"] == 3
    assert [(i["name"], i["data_type"], i["dims"]) for i in over_http["input"]] == [
        ("image", "TYPE_STRING", [1]), ("input", "TYPE_UINT8", [28, 28, 1])
    ]
    assert [(o["name"], o["dims"]) for o in over_http["output"]] == [("probabilities", [10]), ("label", [1])]
    # gRPC's JSON has int64 as strings (protobuf's JSON mapping); the content is the same
    assert over_grpc["name"] == NAME and int(over_grpc["max_batch_size"]) == 16
    assert [int(d) for d in over_grpc["input"][1]["dims"]] == [28, 28, 1]
    assert int(over_grpc["dynamic_batching"]["default_queue_policy"]["max_queue_size"]) == 77
    assert over_grpc["parameters"]["variant"]["string_value"] == over_http["parameters"]["variant"]["string_value"]
    assert h.get_model_config(NAME, model_version="1")["name"] == NAME
    params = {k: v["string_value"] for k, v in over_http["parameters"].items()}
    assert json.loads(params["labels"]) == [f"class_{i}" for i in range(10)]
    assert params["execution_provider"] == "CPUExecutionProvider" and params["layout"] == "NHWC"


def _stats(h: Any) -> dict[str, Any]:
    (entry,) = h.get_inference_statistics(NAME)["model_stats"]
    return entry


def test_statistics_count_what_was_sent(clients: tuple[Any, Any]) -> None:
    g, h = clients
    before = _stats(h)
    for n in (1, 3, 2):
        _infer(g, grpcclient, n)
        _infer(h, httpclient, n)
    after = _stats(h)
    assert after["inference_count"] - before["inference_count"] == 12
    ok = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    assert ok == 6
    assert 1 <= after["execution_count"] - before["execution_count"] <= 6
    for part in ("success", "queue", "compute_infer"):
        assert after["inference_stats"][part]["ns"] > before["inference_stats"][part]["ns"]
    assert after["inference_stats"]["queue"]["count"] - before["inference_stats"]["queue"]["count"] == 6
    assert after["last_inference"] > 0 and after["version"] == "1"
    (over_grpc,) = g.get_inference_statistics(NAME, as_json=True)["model_stats"]
    assert int(over_grpc["inference_count"]) == after["inference_count"]
    everything = h.get_inference_statistics()["model_stats"]
    assert [(e["name"], e["version"]) for e in everything if e["name"] == NAME] == [(NAME, "1")]


def test_a_request_past_its_deadline_counts_as_failed(clients: tuple[Any, Any]) -> None:
    g, h = clients
    before = _stats(h)["inference_stats"]["fail"]["count"]
    with pytest.raises(InferenceServerException, match="deadline|estimated wait"):
        _infer(g, grpcclient, 1, timeout=1)  # tritonclient's `timeout` parameter: 1 microsecond in the queue
    assert _stats(h)["inference_stats"]["fail"]["count"] == before + 1


def test_repository_index_lists_the_registry(clients: tuple[Any, Any]) -> None:
    g, h = clients
    index = {m["name"]: m for m in h.get_model_repository_index()}
    assert index[NAME] == {"name": NAME, "version": "1", "state": "READY", "reason": ""}
    assert index["on-the-shelf"]["state"] == "UNAVAILABLE"
    over_grpc = g.get_model_repository_index(as_json=True)["models"]
    assert {m["name"]: m.get("state") for m in over_grpc} == {NAME: "READY", "on-the-shelf": "UNAVAILABLE"}
    ready = g.get_model_repository_index().models
    assert sorted(m.name for m in ready) == sorted([NAME, "on-the-shelf"])


def test_unknown_models_are_not_found(clients: tuple[Any, Any]) -> None:
    g, h = clients
    with pytest.raises(InferenceServerException, match="unknown model"):
        h.get_model_config("nope")
    with pytest.raises(InferenceServerException) as info:
        g.get_inference_statistics("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException, match="version '9'"):
        h.get_inference_statistics(NAME, model_version="9")


def test_grpc_reflection_lists_the_inference_service(served: OipTestServer) -> None:
    pytest.importorskip("grpc_reflection")
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(served.grpc_url) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services
        service = DescriptorPool(database).FindServiceByName("inference.GRPCInferenceService")
        methods = {m.name for m in service.methods}
        assert {"ModelInfer", "ModelConfig", "ModelStatistics", "RepositoryIndex"} <= methods
