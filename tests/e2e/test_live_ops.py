"""Live operations inside a real ``bentoml serve .``: per-client rate limits (HTTP 429 + Retry-After, OIP REST,
gRPC RESOURCE_EXHAUSTED), drift gauges that stay calm on reference-like traffic and move under a shifted input
set, and the sampled prediction log exported by ``imgserve predictions export``."""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from imgserve.cli import main
from inference.reference import REFERENCE_FILE, build_reference
from inference.registry import Registry
from inference.session import OnnxClassifier
from tests.e2e.conftest import Server, free_port, running_server
from tests.fixtures import encode_image, register_tiny

pytestmark = pytest.mark.e2e

LIMIT = 30  # per hour: nothing refills during the test


def images(n: int, *, light: float, size: int = 28, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(rng.normal(light, 35.0, size=(size, size)), 0, 255).astype(np.uint8) for _ in range(n)]


def pngs(arrays: list[np.ndarray]) -> list[bytes]:
    return [encode_image(Image.fromarray(a, "L"), "PNG") for a in arrays]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, Path]]:
    tmp = tmp_path_factory.mktemp("liveops")
    registry = Registry(tmp / "models")
    card = register_tiny(registry)
    # The tiny version's drift reference, made as export makes one: its own predictions on "held-out" images.
    model = OnnxClassifier.load(registry.model_file("tiny", card.version, "int8"), card, "int8")
    held = np.stack(images(1000, light=80.0, seed=1))[..., None]
    build_reference(model.predict_pixels(held), held, card.labels, source="test images", variant="int8").save(
        registry.version_dir("tiny", card.version) / REFERENCE_FILE
    )
    grpc_port = free_port()
    with running_server(
        registry, tmp, workers=1, grpc_port=grpc_port, rate_limit=f"{LIMIT}/hour", data_dir=tmp / "data",
        prediction_log_sample=1.0, drift_window=300, drift_min_samples=100, poll_interval_s=0,
    ) as server:
        yield server, grpc_port, tmp / "data"


def _psi(server: Server) -> dict[str, float]:
    with server.client() as c:
        text = c.get("/metrics").text
    found = re.findall(r'imgserve_drift_psi\{model="tiny",signal="(\w+)",version="1"\} (\S+)', text)
    return {signal: float(value) for signal, value in found}


def test_rate_limit_per_client_on_http_rest_and_grpc(served: tuple[Server, int, Path]) -> None:
    server, grpc_port, _ = served
    image = pngs(images(1, light=80.0))[0]
    alice = {"authorization": "Bearer alice", "content-type": "image/png"}
    with server.client() as c:
        answers = [c.post("/predict", content=image, headers=alice) for _ in range(LIMIT + 10)]
        assert Counter(r.status_code for r in answers) == {200: LIMIT, 429: 10}
        refused = answers[-1]
        assert refused.json()["type"] == "rate_limited" and "rate limit of 30 requests" in refused.json()["error"]
        assert int(refused.headers["retry-after"]) >= 60  # one request every 120 s at 30/hour
        rest = c.post("/v2/models/tiny/infer", headers={"authorization": "Bearer alice"}, json={
            "inputs": [{"name": "input", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}]})
        assert rest.status_code == 429 and rest.json()["type"] == "rate_limited"  # one budget for every transport
        assert c.post("/predict", content=image, headers={**alice, "authorization": "Bearer bob"}).status_code == 200
        assert c.post("/predict", content=image, headers={"content-type": "image/png"}).status_code == 200  # address
        assert c.get("/model").status_code == 200  # only prediction requests count
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    inp = grpcclient.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([image], dtype=np.object_))
    ok = 0
    with pytest.raises(InferenceServerException) as info:
        for _ in range(LIMIT + 1):
            g.infer("tiny", [inp], headers={"authorization": "Bearer carol"})
            ok += 1
    assert ok == LIMIT and info.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
    assert "rate limit" in info.value.message()
    with server.client() as c:
        assert re.search(r'imgserve_requests_total\{endpoint="/predict",[^}]*status="429"\} 10\.0', c.get("/metrics").text)


def test_drift_gauges_move_under_shifted_inputs(served: tuple[Server, int, Path]) -> None:
    server, _, _ = served
    headers = {"authorization": "Bearer drift-client"}

    def send(batch: list[bytes]) -> None:
        with server.client() as c:
            for i in range(0, len(batch), 32):
                files = [("images", (f"{j}.png", b, "image/png")) for j, b in enumerate(batch[i : i + 32])]
                assert c.post("/predict_batch", files=files, headers=headers).status_code == 200

    send(pngs(images(320, light=80.0, seed=2)))  # like the reference: fills the 300-image window
    calm = _psi(server)
    assert set(calm) == {"predicted_class", "confidence", "brightness", "size"}, calm
    assert all(v < 0.15 for v in calm.values()), calm  # sampling noise of 300 images; the alert is at 0.25
    # Brighter, four times bigger photos: the model sees them resized, but the inputs have clearly changed.
    send(pngs(images(320, light=190.0, size=112, seed=3)))
    shifted = _psi(server)
    assert shifted["brightness"] > 0.25 and shifted["size"] > 0.25, shifted
    print(f"PSI calm {calm}\nPSI shifted {shifted}")


def test_prediction_log_export(served: tuple[Server, int, Path], tmp_path: Path) -> None:
    server, _, data = served
    image = pngs(images(1, light=120.0, seed=9))[0]
    with server.client() as c:
        r = c.post("/predict", content=image, headers={"content-type": "image/png", "authorization": "Bearer log"})
    assert r.status_code == 200
    out = tmp_path / "predictions.csv"
    digest = hashlib.sha256(image).hexdigest()
    for _ in range(50):  # the writer thread flushes as soon as its queue is empty
        assert main(["predictions", "export", "--log-dir", str(data / "predictions"), "--out", str(out)]) == 0
        rows = list(csv.DictReader(out.open()))
        if any(row["sha256"] == digest for row in rows):
            break
    (row,) = [row for row in rows if row["sha256"] == digest]
    assert row["label"] == r.json()["label"] and float(row["score"]) == pytest.approx(r.json()["score"], rel=1e-5)
    assert (row["model"], row["version"], row["variant"]) == ("tiny", "1", "int8")
    assert (row["width"], row["height"], row["bytes"]) == ("28", "28", str(len(image)))
    assert float(row["latency_ms"]) > 0 and row["image_file"] == ""
    assert not (data / "predictions" / "images").exists()
