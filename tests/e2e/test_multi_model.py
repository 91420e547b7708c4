"""Issue 14's must-show: an imported NCHW RGB model (real `imgserve import`, INT8 calibrated) and the shipped
default model served side by side by one `bentoml serve .` with two workers; both answer `/predict?model=`,
tritonclient gRPC and HTTP infer, and Triton's config/statistics calls, the statistics agreeing exactly with
the traffic sent. The calls are the ones Triton's perf_analyzer makes (it is not installable here)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

from inference.registry import Registry
from tests.e2e.conftest import ROOT, Server, free_port, running_server
from tests.fixtures import encode_image, external_classifier, image_dir, sample_image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RGB_LABELS = ("cat", "dog", "fox", "owl", "yak")
DEFAULT = "fashion-mnist"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, np.ndarray, np.ndarray]]:
    tmp = tmp_path_factory.mktemp("multi")
    shutil.copytree(ROOT / "models" / DEFAULT, tmp / "models" / DEFAULT, ignore=shutil.ignore_patterns("*.keras"))
    data, weights, bias = external_classifier(24, 20, 3, len(RGB_LABELS), layout="NCHW", softmax=False, seed=4)
    (tmp / "rgbnet.onnx").write_bytes(data)
    (tmp / "labels.txt").write_text("\n".join(RGB_LABELS) + "\n")
    calib = image_dir(tmp / "calib", 40, size=(30, 26))
    cmd = [sys.executable, "-m", "imgserve", "import", str(tmp / "rgbnet.onnx"), "--name", "rgbnet",
           "--labels", str(tmp / "labels.txt"), "--models-dir", str(tmp / "models"), "--calibration", str(calib),
           "--mean", *map(str, MEAN), "--std", *map(str, STD)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "registered rgbnet v1" in done.stdout and "NCHW 24x20x3" in done.stdout
    grpc_port = free_port()
    registry = Registry(tmp / "models")
    with running_server(registry, tmp, grpc_port=grpc_port, models=f"{DEFAULT},rgbnet", workers=2) as server:
        yield server, grpc_port, weights, bias


def _expected(image: Image.Image, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """rgbnet's probabilities by hand: resize, /255, ImageNet mean/std, NCHW flatten, linear, softmax."""
    px = np.asarray(image.convert("RGB").resize((20, 24), Image.Resampling.BILINEAR), np.float32) / 255.0
    x = ((px - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)).transpose(2, 0, 1)
    logits = x.reshape(1, -1) @ weights + bias
    e = np.exp(logits - logits.max())
    return (e / e.sum())[0]


def test_both_models_answer_predict_with_model_parameter(served: tuple[Server, int, Any, Any]) -> None:
    server, _, weights, bias = served
    with server.client() as c:
        listed = c.get("/models").json()["models"]
        assert [(m["name"], m["default"], m["ready"]) for m in listed] == [(DEFAULT, True, True), ("rgbnet", False, True)]
        boot = (ROOT / "examples" / "ankle-boot.png").read_bytes()
        default = c.post("/predict", files={"image": ("boot.png", boot, "image/png")}).json()
        assert default["label"] == "Ankle boot" and default["model"]["name"] == DEFAULT
        photo = sample_image((64, 48), "RGB", seed=11)
        body = c.post("/predict?model=rgbnet&top_k=5", files={"image": ("p.png", encode_image(photo), "image/png")})
        got = body.json()
        assert got["model"] == {"name": "rgbnet", "version": 1, "variant": "int8"}
        expected = dict(zip(RGB_LABELS, _expected(photo, weights, bias), strict=True))
        assert got["label"] == max(expected, key=expected.get)  # INT8 keeps the top-1 of the hand computation
        scores = {t["label"]: t["score"] for t in got["top_k"]}
        assert scores == pytest.approx(expected, abs=0.05)
        card = c.get("/model", params={"model": "rgbnet"}).json()
        assert card["preprocessing"]["layout"] == "NCHW" and card["preprocessing"]["mean"] == list(MEAN)
        assert card["execution_provider"] == "CPUExecutionProvider" and card["variants"] == ["fp32", "int8"]
        assert c.get("/model").json()["name"] == DEFAULT
        missing = c.post("/predict?model=nope", files={"image": ("p.png", encode_image(photo), "image/png")})
        assert missing.status_code == 404 and "this server serves 'fashion-mnist', 'rgbnet'" in missing.json()["error"]


def _bytes_input(module: Any, images: list[bytes]) -> Any:
    inp = module.InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_))
    return inp


def _perf_analyzer_calls(server: Server, grpc_port: int, name: str, shape: list[int]) -> dict[str, Any]:
    """What perf_analyzer does for one model (live, ready, metadata, config, infer loop, statistics), over both
    protocols; returns the statistics delta it would report."""
    http_url = server.url.removeprefix("http://")
    g, h = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}"), httpclient.InferenceServerClient(http_url)
    assert g.is_server_live() and g.is_server_ready() and h.is_server_live() and h.is_server_ready()
    assert g.get_model_metadata(name).name == name and h.get_model_metadata(name)["platform"] == "onnxruntime_onnx"
    config = h.get_model_config(name)
    assert config["max_batch_size"] >= 3 and config["input"][1]["dims"] == shape
    assert list(g.get_model_config(name).config.input[1].dims) == shape
    before = h.get_inference_statistics(name)["model_stats"][0]
    images = [encode_image(sample_image((40, 40), "RGB", seed=i)) for i in range(3)]
    for _ in range(2):  # fresh clients each round: BentoML and SO_REUSEPORT spread them over both workers
        gc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        result = gc.infer(name, [_bytes_input(grpcclient, images)])
        assert result.as_numpy("probabilities").shape == (3, config["output"][0]["dims"][0])
        gc.close()
        hc = httpclient.InferenceServerClient(http_url)
        assert hc.infer(name, [_bytes_input(httpclient, images[:2])]).get_response()["model_name"] == name
        hc.close()
    for i in range(3):
        r = httpx.post(f"{server.url}/predict", params={"model": name}, files={"image": ("x.png", images[i], "image/png")})
        assert r.status_code == 200
    after = g.get_inference_statistics(name, as_json=True)["model_stats"][0]
    g.close()
    h.close()
    stats = {"inference_count": int(after["inference_count"]) - before["inference_count"],
             "execution_count": int(after["execution_count"]) - before["execution_count"]}
    for part in ("success", "fail", "queue", "compute_infer"):
        stats[part] = int(after["inference_stats"][part].get("count", 0)) - before["inference_stats"][part]["count"]
        stats[part + "_ns"] = int(after["inference_stats"][part].get("ns", 0)) - before["inference_stats"][part]["ns"]
    return stats


@pytest.mark.parametrize(("name", "shape"), [(DEFAULT, [28, 28, 1]), ("rgbnet", [24, 20, 3])])
def test_triton_calls_and_statistics_agree_with_the_traffic(
    served: tuple[Server, int, Any, Any], name: str, shape: list[int]
) -> None:
    server, grpc_port, _, _ = served
    stats = _perf_analyzer_calls(server, grpc_port, name, shape)
    print(f"{name}: {stats}")
    assert stats["inference_count"] == 2 * (3 + 2) + 3  # images sent: gRPC 3 + HTTP 2, twice, then 3 x /predict
    assert stats["success"] == 2 * 2 + 3 and stats["fail"] == 0
    assert stats["queue"] == stats["compute_infer"] == stats["success"]
    assert 1 <= stats["execution_count"] <= stats["success"]
    assert stats["success_ns"] > stats["compute_infer_ns"] > 0


def test_metrics_and_index_name_both_models(served: tuple[Server, int, Any, Any]) -> None:
    server, grpc_port, _, _ = served
    text = httpx.get(f"{server.url}/metrics").text
    shipped = Registry(ROOT / "models").aliases(DEFAULT)["production"]
    for name, version in ((DEFAULT, shipped), ("rgbnet", 1)):
        info = f'model="{name}",provider="CPUExecutionProvider",variant="int8",version="{version}"'
        assert f"imgserve_model_info{{{info}}} 1.0" in text
        assert f'imgserve_model_inferences_total{{model="{name}",version="{version}"}}' in text
    assert 'protocol="grpc",status="200"' in text and 'protocol="http",status="200"' in text
    assert 'status="OK"' not in text
    assert server.log_text().count("now serving") == 4  # two workers, two models each: the counts above summed both
    index = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}").get_model_repository_index(as_json=True)
    assert {m["name"]: m["state"] for m in index["models"]} == {DEFAULT: "READY", "rgbnet": "READY"}
