"""Canary and shadow rollouts through the admin runner's API and its Rollouts page, against a real admin runner
(``python -m imgserve admin``) and a real ``bentoml serve .``: start a canary and a shadow over the API, drive
traffic (shifted inputs, so drift moves), read the per-version figures, shadow agreement and PSI back from
``GET /models/{name}/rollout``, let a failing canary be aborted by the guard, and see all of it on the page in
headless Chromium. ``IMGSERVE_SCREENSHOT_DIR`` (e.g. docs/img) keeps the page's screenshots."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from inference.reference import REFERENCE_FILE, build_reference
from inference.registry import Registry
from inference.session import OnnxClassifier
from tests.e2e.conftest import Server, running_server
from tests.e2e.harness import REPO, ServerProcess
from tests.e2e.test_canary import failing_onnx_bytes
from tests.fixtures import encode_image, register_tiny, tiny_card
from tests.ports import free_port

pytestmark = pytest.mark.e2e

TOKEN = "e2e-rollouts-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PNG = {"content-type": "image/png"}


def images(n: int, *, light: float, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    arrays = [np.clip(rng.normal(light, 35.0, size=(28, 28)), 0, 255).astype(np.uint8) for _ in range(n)]
    return [encode_image(Image.fromarray(a, "L"), "PNG") for a in arrays]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("rollouts")
    registry = Registry(tmp / "models")
    held = np.stack([np.asarray(Image.open(__import__("io").BytesIO(p))) for p in images(600, light=80.0, seed=1)])[..., None]
    for seed in (0, 1, 2):  # v1 production, v2 the canary, v3 the shadow; each with a drift reference
        card = register_tiny(registry, seed=seed)
        model = OnnxClassifier.load(registry.model_file("tiny", card.version, "int8"), card, "int8")
        build_reference(model.predict_pixels(held), held, card.labels, source="test images", variant="int8").save(
            registry.version_dir("tiny", card.version) / REFERENCE_FILE)
    registry.promote("tiny", 1)
    with registry.stage("tiny") as staged:  # v4: a canary that fails on every real image
        (staged / "model.onnx").write_bytes(failing_onnx_bytes())
        (staged / "model.int8.onnx").write_bytes(failing_onnx_bytes())
        registry.register(staged, tiny_card("tiny"))
    with running_server(registry, tmp, workers=1, poll_interval_s=0.3, canary_min_requests=20,
                        drift_window=200, drift_min_samples=50) as server:
        port = free_port()
        cmd = [sys.executable, "-m", "imgserve", "admin", "--port", str(port), "--models-dir", str(tmp / "models"),
               "--data-dir", str(tmp / "data"), "--service-url", server.url]
        admin = ServerProcess(cmd, ready_url=f"http://127.0.0.1:{port}/health", log=tmp / "admin.log",
                              env={"IMGSERVE_ADMIN_TOKEN": TOKEN, "IMGSERVE_MODEL": "tiny"})
        with admin:
            yield server, f"http://127.0.0.1:{port}"


def wait_for(check: Any, timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_canary_and_shadow_through_the_admin_api(stack: tuple[Server, str]) -> None:
    server, admin = stack
    with httpx.Client(base_url=admin, timeout=30) as api, server.client() as svc:
        assert api.post("/models/tiny/canary", json={"version": 2, "weight": 30}).status_code == 401
        bad = api.post("/models/tiny/canary", json={"version": 2, "weight": 0}, headers=AUTH)
        assert bad.status_code == 400 and "weight" in bad.json()["error"]
        assert api.post("/models/tiny/canary", json={"version": 1}, headers=AUTH).status_code == 400  # production
        assert api.post("/models/tiny/canary/abort", headers=AUTH).status_code == 404  # no canary yet
        r = api.post("/models/tiny/canary", json={"version": 2, "weight": 30}, headers=AUTH)
        assert r.status_code == 200 and r.json()["aliases"]["canary"] == 2
        r = api.post("/models/tiny/shadow", json={"version": "v3", "share": 100}, headers=AUTH)
        assert r.status_code == 200 and r.json()["aliases"]["shadow"] == 3
        assert server.registry.aliases("tiny")["weights"] == {"canary": 30.0, "shadow": 100.0}

        def answered_by_canary() -> bool:
            return svc.post("/predict", content=images(1, light=80.0, seed=9)[0], headers=PNG).json()["model"]["version"] == 2

        wait_for(answered_by_canary, what="the service to route to the canary")
        versions = [svc.post("/predict", content=p, headers=PNG).json()["model"]["version"]
                    for p in images(300, light=170.0, seed=3)]  # brighter than the reference: drift
        assert set(versions) == {1, 2}

        def live() -> dict[str, Any] | None:
            body = api.get("/models/tiny/rollout", headers=AUTH).json()
            drift = (body["live"] or {}).get("drift", [])
            return body if any(d["version"] == "1" and d["signal"] == "brightness" for d in drift) else None

        body = wait_for(live, what="drift gauges in the rollout view")
    assert body["canary"] == {"version": 2, "weight": 30.0} and body["shadow"] == {"version": 3, "share": 100.0}
    rows = {v["version"]: v for v in body["live"]["versions"]}
    assert rows["1"]["requests"] + rows["2"]["requests"] >= 300 and rows["2"]["requests"] > 30
    assert rows["2"]["errors"] == 0 and rows["2"]["mean_latency_ms"] > 0
    shadow = {s["version"]: s for s in body["live"]["shadow"]}["3"]
    assert shadow["compared"] > 0 and 0 <= shadow["agreement"] <= 1 and 0 < shadow["mean_confidence"]["shadow"] <= 1
    psi = {d["signal"]: d for d in body["live"]["drift"] if d["version"] == "1"}
    assert psi["brightness"]["psi"] > body["live"]["psi_threshold"] and psi["brightness"]["significant"]
    assert [e["action"] for e in body["events"][:2]] == ["shadow", "canary"]


def test_promote_abort_and_an_automatic_abort(stack: tuple[Server, str]) -> None:
    server, admin = stack
    with httpx.Client(base_url=admin, timeout=30) as api, server.client() as svc:
        r = api.post("/models/tiny/canary/promote", json={"reason": "looks good"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["aliases"]["production"] == 2 and "canary" not in r.json()["aliases"]
        r = api.post("/models/tiny/canary", json={"version": 4, "weight": 50}, headers=AUTH)  # the failing one
        assert r.status_code == 200

        def aborted() -> bool:
            for p in images(10, light=80.0, seed=5):
                svc.post("/predict", content=p, headers=PNG)
            body = api.get("/models/tiny/rollout", headers=AUTH).json()
            return bool(body["automatic_aborts"] and body["live"]["canary_aborts"])  # history and counter

        wait_for(aborted, timeout=60, what="the guard's automatic abort")
        body = api.get("/models/tiny/rollout", headers=AUTH).json()
    record = body["automatic_aborts"][0]
    assert record["version"] == 4 and "error rate" in record["reason"] and body["canary"] is None
    assert {"version": "4", "count": 1.0} in body["live"]["canary_aborts"]
    assert [e["action"] for e in body["events"][:2]] == ["canary-abort", "canary"]


CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def test_rollouts_page(stack: tuple[Server, str], tmp_path: Path) -> None:
    """The page after the two tests above: shadow v3 with its agreement, per-version figures, drift bars over the
    dashed threshold, the automatic abort highlighted; then a shadow stop from the page."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, admin = stack
    with httpx.Client(base_url=admin, timeout=30) as api:  # a live canary for the picture
        assert api.post("/models/tiny/canary", json={"version": 3, "weight": 10}, headers=AUTH).status_code == 200
    with server.client() as svc:
        for p in images(120, light=80.0, seed=7):
            svc.post("/predict", content=p, headers=PNG)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1360,1000",
                "--hide-scrollbars", f"--user-data-dir={tmp_path / 'chrome'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    try:
        driver.get(f"{admin}/ui/login")
        driver.execute_script("sessionStorage.setItem('imgserve.adminToken', arguments[0])", TOKEN)
        driver.get(f"{admin}/ui/rollouts?model=tiny")
        wait = WebDriverWait(driver, 20, poll_frequency=0.2)
        try:
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart-drift rect")) >= 4)
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#shadow tbody tr"))
        except Exception:
            _shot(driver, "rollouts-failure")
            raise AssertionError(f"page text: {driver.find_element(By.TAG_NAME, 'body').text[:2000]}; "
                                 f"console: {driver.get_log('browser')}") from None
        assert "canary v3 at 10 %" in driver.find_element(By.ID, "rollout-summary").text
        assert driver.find_elements(By.CSS_SELECTOR, "#events tr.alert-row"), "the automatic abort is highlighted"
        assert "v3" in driver.find_element(By.CSS_SELECTOR, "#shadow tbody").text
        _shot(driver, "rollouts")
        driver.find_element(By.ID, "shadow-stop").click()
        wait.until(lambda d: d.find_element(By.ID, "shadow-state").text == "No shadow.")
        assert server.registry.aliases("tiny").get("shadow") is None
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    out = Path(os.environ.get("IMGSERVE_SCREENSHOT_DIR", REPO / "build" / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.min(3000, document.documentElement.scrollHeight)")
    driver.set_window_size(1360, max(900, height + 20))
    time.sleep(0.3)
    driver.save_screenshot(str(out / f"{name}.png"))
