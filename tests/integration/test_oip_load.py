"""OIP under real overload and across a hot swap, over gRPC and REST with the unmodified tritonclient."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inference.registry import Registry
from serving.settings import ServeSettings
from tests.fixtures import register_tiny, tiny_card
from tests.integration.oip_harness import OipTestServer

H, W, C = 28, 28, 1
ROWS = 8  # rows per request = the whole queue: one request running, one queued, the rest refused


def slow_onnx_bytes(depth: int) -> bytes:
    """Like the tiny model but ``depth`` 784x784 MatMuls deep (one shared weight): tens of ms per batch."""
    from onnx import TensorProto, helper, numpy_helper

    features = H * W * C
    nodes = [helper.make_node("Reshape", ["input", "flat_shape"], ["h0"])]
    nodes += [helper.make_node("MatMul", [f"h{i}", "I"], [f"h{i + 1}"]) for i in range(depth)]
    nodes += [
        helper.make_node("MatMul", [f"h{depth}", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", H, W, C])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(np.array([-1, features], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(np.eye(features, dtype=np.float32), "I"),
            numpy_helper.from_array(rng.normal(0, 0.05, (features, 10)).astype(np.float32), "W"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(scope="module")
def overloaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OipTestServer]:
    root = tmp_path_factory.mktemp("models")
    registry = Registry(root)
    data = slow_onnx_bytes(depth=768)
    with registry.stage("slow") as staged:
        (staged / "model.onnx").write_bytes(data)
        (staged / "model.int8.onnx").write_bytes(data)
        registry.register(staged, tiny_card("slow"))
    settings = ServeSettings(
        models_dir=root, model="slow", lanes=1, max_queue=ROWS, decode_threads=1, poll_interval_s=0
    )
    server = OipTestServer(settings).start()
    yield server
    server.stop()


def _pixels() -> np.ndarray:
    return np.zeros((ROWS, H, W, C), np.uint8)


def test_grpc_overload_is_unavailable(overloaded: OipTestServer) -> None:
    client = grpcclient.InferenceServerClient(overloaded.grpc_url)
    inp = grpcclient.InferInput("input", [ROWS, H, W, C], "UINT8").set_data_from_numpy(_pixels())

    def call() -> str:
        try:
            client.infer("slow", [inp])
            return "ok"
        except InferenceServerException as exc:
            assert exc.status() == "StatusCode.UNAVAILABLE", exc
            assert "queue is full" in exc.message() or "deadline" in exc.message()
            return "unavailable"

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(lambda _: call(), range(12)))
    client.close()
    assert "ok" in outcomes and "unavailable" in outcomes, outcomes


def test_http_overload_is_503_with_retry_after(overloaded: OipTestServer) -> None:
    client = httpclient.InferenceServerClient(overloaded.http_url, concurrency=12)
    inp = httpclient.InferInput("input", [ROWS, H, W, C], "UINT8")
    inp.set_data_from_numpy(_pixels())
    pending = [client.async_infer("slow", [inp]) for _ in range(12)]
    statuses = []
    for req in pending:
        try:
            req.get_result()
            statuses.append("200")
        except InferenceServerException as exc:
            assert "queue is full" in exc.message() or "deadline" in exc.message()
            statuses.append(exc.status())
    client.close()
    assert "200" in statuses and "503" in statuses and set(statuses) <= {"200", "503"}, statuses

    async def burst() -> list[httpx.Response]:  # the same over raw HTTP, to see the headers
        body = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [ROWS, H, W, C],
                    "datatype": "UINT8",
                    "data": _pixels().reshape(-1).tolist(),
                }
            ]
        }
        async with httpx.AsyncClient(base_url=f"http://{overloaded.http_url}", timeout=30) as http:
            return await asyncio.gather(*(http.post("/v2/models/slow/infer", json=body) for _ in range(8)))

    refused = [r for r in asyncio.run(burst()) if r.status_code == 503]
    assert refused and all(int(r.headers["Retry-After"]) >= 1 and r.json()["error"] for r in refused)


def test_hot_swap_reports_the_new_version(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    register_tiny(registry, seed=0)
    register_tiny(registry, seed=1)
    settings = ServeSettings(models_dir=tmp_path, model="tiny", lanes=1, decode_threads=1, poll_interval_s=0)
    server = OipTestServer(settings).start()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        inp = grpcclient.InferInput("input", [1, H, W, C], "UINT8").set_data_from_numpy(
            np.zeros((1, H, W, C), np.uint8)
        )
        assert client.infer("tiny", [inp]).get_response().model_version == "1"
        registry.promote("tiny", 2)
        server.call(server.runtime.reload())
        assert client.infer("tiny", [inp]).get_response().model_version == "2"
        assert client.get_model_metadata("tiny", as_json=True)["versions"] == ["2"]
        with pytest.raises(InferenceServerException, match="version '1' is not served"):
            client.infer("tiny", [inp], model_version="1")
    finally:
        client.close()
        server.stop()


def test_one_admission_control_for_grpc_and_rest(overloaded: OipTestServer) -> None:
    """gRPC and REST take slots of the runtime's one admission control: with a limit of 2, never more than 2
    requests are admitted at once whatever the mix, and each transport refuses before decoding (503 /
    UNAVAILABLE "too many requests in progress"), not only in the batcher's queue."""
    runtime = overloaded.runtime
    admission = runtime.admission
    peak: list[int] = [0]
    original_limit, original_hook = admission.limit, admission._on_change

    def record(n: int) -> None:
        peak[0] = max(peak[0], n)

    admission.limit, admission._on_change = 2, record
    grpc_client = grpcclient.InferenceServerClient(overloaded.grpc_url)
    pixels = np.zeros((1, H, W, C), np.uint8)

    def call(transport: str) -> str:
        lib = grpcclient if transport == "grpc" else httpclient
        inp = lib.InferInput("input", [1, H, W, C], "UINT8")
        inp.set_data_from_numpy(pixels)
        # tritonclient.http runs on gevent: a client belongs to the thread that made it ("Cannot switch to a
        # different thread" otherwise), so each REST call makes its own
        client = grpc_client if transport == "grpc" else httpclient.InferenceServerClient(overloaded.http_url)
        try:
            client.infer("slow", [inp])
            return f"{transport}:ok"
        except InferenceServerException as exc:
            busy = "too many requests in progress" in (exc.message() or "")
            return f"{transport}:busy" if busy else f"{transport}:{exc.status()}:{exc.message()}"
        finally:
            if client is not grpc_client:
                client.close()

    try:
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(call, ["grpc", "rest"] * 8))
    finally:
        admission.limit, admission._on_change = original_limit, original_hook
        grpc_client.close()
    assert peak[0] == 2, (peak, outcomes)
    assert {"grpc:busy", "rest:busy"} <= set(outcomes), outcomes
    assert set(outcomes) <= {"grpc:ok", "grpc:busy", "rest:ok", "rest:busy"}, outcomes
