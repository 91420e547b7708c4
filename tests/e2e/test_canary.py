"""Canary rollouts in a real ``bentoml serve .``: a 10 % canary measured over 1,000 requests, promoted by the CLI;
a canary that fails on real inputs is aborted by the guard, recorded in the alias history with its figures, and
no client request fails after the abort."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from imgserve.cli import main
from inference.registry import Registry
from tests.e2e.conftest import Server, running_server
from tests.fixtures import encode_image, register_tiny, tiny_card

pytestmark = pytest.mark.e2e

IMAGE = encode_image(Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8), "L"), "PNG")
HEADERS = {"content-type": "image/png"}


def failing_onnx_bytes(classes: int = 10) -> bytes:
    """A classifier that answers all-zero inputs (ONNX Runtime's warm-up, the batch-size probe) but fails on any
    real image: it gathers from a 2-entry table at index ``100 * max(pixel)``, out of bounds past 0.01."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["input"], ["peak"], keepdims=0),
            helper.make_node("Mul", ["peak", "hundred"], ["scaled"]),
            helper.make_node("Cast", ["scaled"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["offset"]),
            helper.make_node("Reshape", ["input", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["logits0"]),
            helper.make_node("Add", ["logits0", "offset"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "failing",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 28, 28, 1])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(np.array(100.0, dtype=np.float32), "hundred"),
            numpy_helper.from_array(np.zeros(2, dtype=np.float32), "table"),
            numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(np.zeros((784, classes), dtype=np.float32), "W"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("canary")
    registry = Registry(tmp / "models")
    register_tiny(registry, seed=0)  # v1: production
    register_tiny(registry, seed=1)  # v2: the good canary
    with registry.stage("tiny") as staged:  # v3: the failing canary
        (staged / "model.onnx").write_bytes(failing_onnx_bytes())
        (staged / "model.int8.onnx").write_bytes(failing_onnx_bytes())
        registry.register(staged, tiny_card("tiny"))
    with running_server(registry, tmp, workers=1, poll_interval_s=0.3, canary_min_requests=20) as server:
        yield server


def versions(client: httpx.Client, n: int) -> Counter[int | str]:
    seen: Counter[int | str] = Counter()
    for _ in range(n):
        r = client.post("/predict", content=IMAGE, headers=HEADERS)
        seen[r.json()["model"]["version"] if r.status_code == 200 else f"http {r.status_code}"] += 1
    return seen


def wait_for(client: httpx.Client, want: set[int], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if set(versions(client, 20)) == want:
            return
        time.sleep(0.2)
    pytest.fail(f"versions {want} not all answering after {timeout_s} s")


def test_ten_percent_canary_then_promote(served: Server) -> None:
    root = str(served.registry.root)
    assert main(["models", "canary", "tiny", "2", "--weight", "10", "--models-dir", root]) == 0
    with served.client() as c:
        wait_for(c, {1, 2})
        counts = versions(c, 1000)
        share = counts[2] / 1000
        print(f"canary share over 1000 requests: {share:.3f} ({dict(counts)})")
        assert set(counts) == {1, 2} and abs(share - 0.10) <= 0.03, counts
        text = c.get("/metrics").text
        for v in (1, 2):  # per-version request counts
            assert re.search(rf'imgserve_model_requests_total\{{model="tiny",outcome="success",version="{v}"\}}', text)
        assert main(["models", "canary", "tiny", "--promote", "--models-dir", root]) == 0
        wait_for(c, {2})
    aliases = served.registry.aliases("tiny")
    assert aliases["production"] == 2 and aliases["previous"] == 1 and "canary" not in aliases
    assert [e["action"] for e in aliases["history"][-2:]] == ["canary", "canary-promote"]


def test_failing_canary_is_aborted_automatically(served: Server) -> None:
    root = str(served.registry.root)
    assert main(["models", "canary", "tiny", "3", "--weight", "50", "--models-dir", root]) == 0
    with served.client() as c:
        deadline = time.monotonic() + 30
        before: Counter[int | str] = Counter()
        while "canary-abort" not in [e["action"] for e in served.registry.aliases("tiny")["history"]]:
            assert time.monotonic() < deadline, f"no abort after 30 s: {dict(before)}"
            before += versions(c, 10)
        after = versions(c, 300)
        text = c.get("/metrics").text
    print(f"before the abort: {dict(before)}; after: {dict(after)}")
    assert before["http 500"] >= 20  # the canary failed every request it got, until the guard had 20
    assert before["http 500"] <= 40 and before[2] >= 1  # ... and not much longer
    assert after == Counter({2: 300})  # no failed request after the abort
    aliases = served.registry.aliases("tiny")
    event = aliases["history"][-1]
    assert aliases["production"] == 2 and "canary" not in aliases
    assert event["action"] == "canary-abort" and event["version"] == 3
    assert event["reason"].startswith("automatic abort: error rate 100.0 %") and "production v2" in event["reason"]
    assert 'imgserve_canary_aborts_total{model="tiny",version="3"} 1.0' in text


def _counter(text: str, name: str, **labels: str) -> float:
    sel = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    found = re.search(rf"^{name}\{{{sel}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_shadow_reports_agreement_without_changing_answers(served: Server) -> None:
    root = str(served.registry.root)
    production = served.registry.resolve("tiny", "production")
    other = 1 if production != 1 else 2  # a different seed: it agrees with production on some images only
    assert main(["models", "shadow", "tiny", str(other), "--share", "100", "--models-dir", root]) == 0
    rng = np.random.default_rng(5)
    images = [encode_image(Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8), "L"), "PNG")
              for _ in range(50)]
    with served.client() as c:
        deadline = time.monotonic() + 30
        compared = 0.0
        answered: Counter[int] = Counter()
        while compared < 100:
            assert time.monotonic() < deadline, f"only {compared} shadow comparisons after 30 s"
            for image in images:
                r = c.post("/predict", content=image, headers=HEADERS)
                answered[r.json()["model"]["version"]] += 1
            text = c.get("/metrics").text
            compared = _counter(text, "imgserve_shadow_compared_total", model="tiny", version=str(other))
    agreed = _counter(text, "imgserve_shadow_agreed_total", model="tiny", version=str(other))
    conf = {role: _counter(text, "imgserve_shadow_confidence_total", model="tiny", version=str(other), role=role)
            for role in ("production", "shadow")}
    shed = _counter(text, "imgserve_shadow_shed_total", model="tiny", version=str(other))
    print(f"shadow v{other}: {compared:.0f} compared, agreement {agreed / compared:.3f}, mean confidence "
          f"production {conf['production'] / compared:.3f} shadow {conf['shadow'] / compared:.3f}, shed {shed:.0f}")
    assert set(answered) == {production}  # answers never come from the shadow
    assert 0 < agreed < compared and conf["production"] > 0 and conf["shadow"] > 0
    assert main(["models", "shadow", "tiny", "--stop", "--models-dir", root]) == 0
    assert "shadow" not in served.registry.aliases("tiny")
