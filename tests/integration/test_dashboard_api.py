"""The dashboard's pages and JSON endpoints, in process (no browser): auth, normalised views, confusion
matrices, and the service proxy against a real HTTP server (the e2e harness's stand-in service)."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from admin.app import create_app
from admin.settings import AdminSettings
from inference.registry import Registry
from tests.e2e.harness import FASHION, band_png, metrics_for, register_version
from tests.ports import free_port

TOKEN = "dash-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(tmp_path: Path, service_url: str | None) -> TestClient:
    settings = AdminSettings(admin_token=TOKEN, models_dir=tmp_path / "models", data_dir=tmp_path / "data",
                             service_url=service_url, model="fashion")
    return TestClient(create_app(settings))


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "models")
    register_version(reg, "fashion", seed=0, metrics=metrics_for(0.8, 0.79, seed=1))
    m2 = metrics_for(0.9, 0.89, seed=2)
    m2.pop("confusion_matrix")
    register_version(reg, "fashion", seed=1, metrics=m2, files={"confusion_matrix.png": band_png(1)}, parent=1)
    register_version(reg, "fashion", seed=2, metrics={})
    reg.promote("fashion", 2)
    return reg


@pytest.fixture()
def client(tmp_path: Path, registry: Registry) -> Iterator[TestClient]:
    with _client(tmp_path, None) as c:
        yield c


@pytest.mark.parametrize("page", ["login", "models", "training", "serving", "rollouts", "try"])
def test_pages_are_public_shells_with_a_strict_csp(client: TestClient, page: str) -> None:
    r = client.get(f"/ui/{page}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in r.text  # no inline script: everything comes from /ui/static
    assert "fashion" not in r.text.replace('data-default-model="fashion"', "").replace('value="fashion"', "")  # no data


def test_root_redirects_and_static_files(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/models"
    js = client.get("/ui/static/common.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/%2e%2e/app.py").status_code == 404
    assert client.get("/ui/static/nope.js").status_code == 404
    assert client.get("/ui/elsewhere").status_code == 404


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/models/fashion/overview"), ("GET", "/models/fashion/versions/1/confusion.png"),
    ("POST", "/models/fashion/versions/1/gradcam"), ("GET", "/serving/metrics"), ("GET", "/serving/model"),
    ("POST", "/serving/predict"),
])
def test_dashboard_endpoints_need_the_token(client: TestClient, method: str, path: str) -> None:
    assert client.request(method, path).status_code == 401
    assert client.request(method, path, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_overview_normalises_versions(client: TestClient) -> None:
    o = client.get("/models/fashion/overview", headers=AUTH).json()
    assert o["aliases"] == {"production": 2, "previous": 1} and o["models"] == ["fashion"]
    v1, v2, v3 = o["versions"]
    assert v1["accuracy"] == {"fp32": 0.8, "int8": 0.79, "keras": None} and v1["confusion"] == "matrix"
    assert v2["confusion"] == "png" and v2["aliases"] == ["production"] and v2["parent_version"] == 1
    assert [r["label"] for r in v2["per_class"]] == list(FASHION) and v2["per_class"][0]["recall"] is not None
    assert v3["confusion"] is None and v3["per_class"] == [] and not v3["has_keras"]
    assert o["history"][0]["action"] == "promote"
    assert client.get("/models/nope/overview", headers=AUTH).status_code == 404


def test_confusion_png_from_file_or_drawn(client: TestClient) -> None:
    stored = client.get("/models/fashion/versions/2/confusion.png", headers=AUTH)
    assert stored.status_code == 200 and stored.content == band_png(1)
    drawn = client.get("/models/fashion/versions/1/confusion.png", headers=AUTH)
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(drawn.content)).width > 300
    assert client.get("/models/fashion/versions/production/confusion.png", headers=AUTH).content == band_png(1)
    assert client.get("/models/fashion/versions/3/confusion.png", headers=AUTH).status_code == 404


def test_gradcam_says_clearly_when_there_is_no_keras_model(client: TestClient) -> None:
    r = client.post("/models/fashion/versions/production/gradcam", headers=AUTH,
                    files={"image": ("x.png", band_png(2), "image/png")})
    assert r.status_code == 404 and r.json()["type"] == "keras_model_missing"
    assert "no model.keras" in r.json()["error"] and "version 2" in r.json()["error"]
    assert client.post("/models/fashion/versions/9/gradcam", headers=AUTH).status_code == 404


def test_service_down_is_a_clear_502(tmp_path: Path, registry: Registry) -> None:
    with _client(tmp_path, f"http://127.0.0.1:{free_port()}") as c:
        for r in (c.get("/serving/metrics", headers=AUTH), c.get("/serving/model", headers=AUTH),
                  c.post("/serving/predict", headers=AUTH, files={"image": ("x.png", band_png(1), "image/png")})):
            assert r.status_code == 502 and r.json()["type"] == "service_unreachable"
            assert "cannot reach the inference service" in r.json()["error"]
    with _client(tmp_path, None) as c:
        assert "no inference service configured" in c.get("/serving/metrics", headers=AUTH).json()["error"]


@pytest.fixture()
def live_service(tmp_path: Path, registry: Registry) -> Iterator[str]:
    """The harness's stand-in inference service on a real port, in a thread."""
    import uvicorn

    from serving.settings import ServeSettings
    from tests.e2e.harness import create_inference_app

    settings = ServeSettings(models_dir=tmp_path / "models", model="fashion", lanes=1, decode_threads=1, poll_interval_s=0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_inference_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_predict_proxy_and_serving_metrics_against_a_live_service(tmp_path: Path, live_service: str) -> None:
    with _client(tmp_path, live_service) as c:
        r = c.post("/serving/predict", headers=AUTH, data={"top_k": "3"}, files={"image": ("x.png", band_png(4), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["top_k"]) == 3 and body["model"]["version"] == 2 and body["round_trip_ms"] > 0
        bad = c.post("/serving/predict", headers=AUTH, files={"image": ("x.png", b"garbage", "image/png")})
        assert bad.status_code == 400 and "not a recognised image" in bad.json()["error"]  # the service's own error
        assert c.get("/serving/model", headers=AUTH).json()["version"] == 2
        for _ in range(5):
            httpx.post(f"{live_service}/predict", files={"image": ("x.png", band_png(1), "image/png")})
        s = c.get("/serving/metrics", headers=AUTH, params={"window": 1}).json()
        assert s["requests_total"] >= 7 and s["window_seconds"] > 0
        assert {"code": "400"}.items() <= s["errors"][0].items()
        assert s["latency"]["lifetime"]["p50_ms"] > 0
        assert s["models"] == [{"model": "fashion", "variant": "int8", "version": "2"}]
        assert s["sources"]["requests"] == "imgserve_requests" and s["batch_size"]["batches_total"] >= 6


def test_the_admin_runner_stays_tensorflow_free(tmp_path: Path) -> None:
    """Grad-CAM imports TensorFlow only in its worker process, never in the runner."""
    code = (
        "import sys; from admin.app import create_app; from admin.settings import AdminSettings; "
        f"create_app(AdminSettings(service_url=None, models_dir={str(tmp_path / 'm')!r}, data_dir={str(tmp_path / 'd')!r})); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
