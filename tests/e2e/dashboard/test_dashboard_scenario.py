"""The dashboard in a real headless browser (Debian chromium + chromedriver, driven by Selenium) against a real
admin runner (``python -m imgserve admin`` subprocess) and the real inference service (``python -m bentoml
serve .``; ``IMGSERVE_E2E_SERVICE=harness`` swaps in harness.py's small app over the same ``ModelRuntime``).
The retrain jobs run tests/e2e/stand_in_retrain.py (fast, scripted epochs, so the page's progress and cancel
paths are exercised in seconds). The stack: conftest.py.

One scenario, in order (each test starts where the one before left the registry and the browser): sign in, the
models table, try an image (prediction + Grad-CAM), a retrain job watched to the end (and one cancelled), live
serving figures under load, roll back. Screenshots of every page go to ``build/screenshots/``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.dashboard.browser import (
    EC,
    By,
    Select,
    assert_no_script_errors,
    confirm,
    drop_file,
    shot,
    sign_in,
    text_of,
    wait,
)
from tests.e2e.dashboard.stack import HAVE_TF, MODEL, TOKEN
from tests.e2e.harness import band_png, pattern_png
from tests.fixtures import class_folder_zip

pytestmark = pytest.mark.e2e


def test_sign_in(browser: Any, admin: str) -> None:
    browser.get(f"{admin}/ui/models")
    wait(browser, EC.url_contains("/ui/login?next="), 10, "redirect to the login page without a token")
    shot(browser, "login")
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.ID, "login-submit").click()
    wait(browser, EC.visibility_of_element_located((By.ID, "login-error")), 5, "wrong-token message")
    assert "not accepted" in text_of(browser, "#login-error")
    sign_in(browser, admin)
    assert browser.execute_script("return sessionStorage.getItem('imgserve.adminToken')") == TOKEN
    # Nothing writable without the token: the same API call with no bearer header is refused.
    status = browser.execute_script(
        "return fetch(`/models/${arguments[0]}/rollback`, {method: 'POST'}).then(r => r.status)", MODEL
    )
    assert status == 401


def test_models_table(browser: Any, admin: str) -> None:
    browser.get(f"{admin}/ui/models")
    wait(browser, EC.presence_of_element_located((By.ID, "version-2")), 10, "versions table")
    assert "production v2" in text_of(browser, "#alias-summary") and "previous v1" in text_of(browser, "#alias-summary")
    row2 = text_of(browser, "#version-2")
    assert "88.70 %" in row2 and "88.40 %" in row2 and "production" in row2 and "small-cnn" in row2
    assert "84.20 %" in text_of(browser, "#version-1")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#accuracy-chart polyline.series")) == 2
    # production's details are open: per-class table and the confusion PNG training wrote
    assert len(browser.find_elements(By.CSS_SELECTOR, "#details-2 table.per-class tbody tr")) == 10
    wait(browser, lambda d: d.execute_script("const i = document.getElementById('confusion-2'); return i && i.complete && i.naturalWidth > 100"),
         10, "confusion matrix image of v2")
    assert "model.keras present" in text_of(browser, "#details-2")
    # v1's matrix exists only as a list in its metadata: drawn by the admin runner
    browser.find_element(By.CSS_SELECTOR, "#version-1 button.ghost").click()
    wait(browser, lambda d: d.execute_script("const i = document.getElementById('confusion-1'); return i && i.complete && i.naturalWidth > 100"),
         10, "confusion matrix drawn from metadata for v1")
    assert "drawn from the metadata" in text_of(browser, "#details-1")
    browser.find_element(By.CSS_SELECTOR, "#version-1 button.ghost").click()
    shot(browser, "models")
    assert_no_script_errors(browser)


def test_try_it_prediction_and_gradcam(browser: Any, admin: str, work: Path) -> None:
    image = work / "checkerboard.png"
    image.write_bytes(pattern_png(3, seed=7))
    browser.get(f"{admin}/ui/try")
    wait(browser, lambda d: "v2" in text_of(d, "#try-served"), 10, "served model shown")
    wait(browser, lambda d: len(Select(d.find_element(By.ID, "cam-version")).options) == 2, 10, "version choices")
    drop_file(browser, "#try-drop", image)
    wait(browser, EC.visibility_of_element_located((By.ID, "try-result")), 15, "prediction from the live service")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#try-topk-list li")) == 5
    assert text_of(browser, "#try-label") and "%" in text_of(browser, "#try-score")
    assert f"{MODEL} v2" in text_of(browser, "#try-model")
    if not HAVE_TF:
        pytest.skip("Grad-CAM needs TensorFlow/Keras (the 'train' extra); the prediction part passed")
    wait(browser, lambda d: (d.find_element(By.ID, "cam-overlay").get_attribute("src") or "").startswith("data:image/png"),
         120, "Grad-CAM overlay (TensorFlow starts in the worker)")
    assert "v2:" in text_of(browser, "#cam-caption") and "last_conv" in text_of(browser, "#cam-caption")
    assert not browser.find_element(By.ID, "cam-missing").is_displayed()
    shot(browser, "try-it")
    Select(browser.find_element(By.ID, "cam-version")).select_by_value("1")
    wait(browser, EC.visibility_of_element_located((By.ID, "cam-missing")), 5, "no model.keras message")
    assert "has no model.keras" in text_of(browser, "#cam-missing")
    assert not browser.find_element(By.ID, "cam-result").is_displayed()
    shot(browser, "try-it-no-keras")
    # the API says the same when asked directly
    token_header = {"Authorization": f"Bearer {TOKEN}"}
    r = httpx.post(f"{admin}/models/{MODEL}/versions/1/gradcam", headers=token_header,
                   files={"image": ("x.png", image.read_bytes(), "image/png")})
    assert r.status_code == 404 and r.json()["type"] == "keras_model_missing"
    assert_no_script_errors(browser)


def test_training_upload_retrain_and_cancel(browser: Any, admin: str, work: Path) -> None:
    zip_path = work / "bands.zip"
    zip_path.write_bytes(class_folder_zip({"Sandal": 6, "Sneaker": 6, "Bag": 6}))
    browser.get(f"{admin}/ui/training")
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#job-base option")), 10, "form ready")
    drop_file(browser, "#dropzone", zip_path)
    wait(browser, lambda d: "uploaded" in text_of(d, "#upload-text"), 15, "dataset upload")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#datasets tbody tr[data-id]")) == 1, 5, "dataset listed")
    assert "Sandal (6)" in text_of(browser, "#datasets")
    assert len(Select(browser.find_element(By.ID, "job-datasets")).all_selected_options) == 1

    epochs = browser.find_element(By.ID, "job-epochs")
    epochs.clear()
    epochs.send_keys("4")
    Select(browser.find_element(By.ID, "job-promote")).select_by_value("force")
    browser.find_element(By.ID, "job-start").click()
    wait(browser, EC.visibility_of_element_located((By.ID, "job-detail")), 10, "job detail")
    wait(browser, lambda d: "epoch 2 / 4" in text_of(d, "#jd-epoch") or text_of(d, "#jd-state") == "succeeded", 30, "progress")
    wait(browser, lambda d: text_of(d, "#jd-state") == "succeeded", 60, "job reaches succeeded")
    assert "epoch 4 / 4" in text_of(browser, "#jd-epoch")
    assert browser.find_element(By.ID, "jd-progress").get_attribute("value") == "4"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#jd-loss polyline.series")) == 2  # loss, val_loss
    assert len(browser.find_elements(By.CSS_SELECTOR, "#jd-acc polyline.series")) == 2  # accuracy, val_accuracy
    assert "epoch 4/4" in text_of(browser, "#jd-log")
    assert "v3 registered, promoted" in text_of(browser, "#jd-outcome")
    assert not browser.find_element(By.ID, "jd-cancel").is_displayed()
    shot(browser, "training")

    # a second, long job: cancel it from the page
    epochs = browser.find_element(By.ID, "job-epochs")
    epochs.clear()
    epochs.send_keys("60")
    browser.find_element(By.ID, "job-start").click()
    wait(browser, lambda d: text_of(d, "#jd-state") == "running" and "epoch" in text_of(d, "#jd-epoch"), 20, "second job running")
    browser.find_element(By.ID, "jd-cancel").click()
    confirm(browser)
    wait(browser, lambda d: text_of(d, "#jd-state") == "cancelled", 20, "job cancelled")
    assert json.loads((work / "models" / MODEL / "aliases.json").read_text())["production"] == 3
    assert_no_script_errors(browser)


def test_serving_page_under_load(browser: Any, admin: str, service: str) -> None:
    stop = threading.Event()
    good = band_png(1)

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not stop.is_set():
                if i % 15 == 14:
                    client.post(f"{service}/predict", content=b"not an image", headers={"Content-Type": "image/png"})
                else:
                    client.post(f"{service}/predict", files={"image": ("x.png", good, "image/png")})
                i += 1

    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        browser.get(f"{admin}/ui/serving")
        wait(browser, lambda d: text_of(d, "#kpi-rps") not in ("–", "", "0.0"), 20, "throughput")
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart-rps polyline.series")) == 1, 15, "throughput series")
        assert float(text_of(browser, "#kpi-rps")) > 0
        assert float(text_of(browser, "#kpi-p50")) > 0 and float(text_of(browser, "#kpi-p99")) >= float(text_of(browser, "#kpi-p50"))
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#errors tr[data-code="400"]'), 10, "400s counted")
        assert browser.find_elements(By.CSS_SELECTOR, "#chart-batch rect.bar")
        assert "/predict" in text_of(browser, "#endpoints")
        assert "v3" in text_of(browser, "#served-model")
        assert "imgserve_requests" in text_of(browser, "#sources")
        time.sleep(2.5)  # one more poll, so the charts have a few points
        shot(browser, "serving")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert_no_script_errors(browser)


def test_roll_back(browser: Any, admin: str, service: str, work: Path) -> None:
    browser.get(f"{admin}/ui/models")
    wait(browser, lambda d: "production v3" in text_of(d, "#alias-summary"), 10, "v3 in production after the retrain")
    assert text_of(browser, "#rollback") == "Roll back to v2"
    browser.find_element(By.ID, "rollback").click()
    confirm(browser, accept=False)
    time.sleep(0.3)
    assert "production v3" in text_of(browser, "#alias-summary")
    browser.find_element(By.ID, "rollback").click()
    confirm(browser, accept=True)
    wait(browser, lambda d: "production v2" in text_of(d, "#alias-summary"), 10, "production back at v2")
    assert "previous v3" in text_of(browser, "#alias-summary")
    assert json.loads((work / "models" / MODEL / "aliases.json").read_text())["production"] == 2
    deadline = time.monotonic() + 10
    while httpx.get(f"{service}/model").json()["version"] != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(f"{service}/model").json()["version"] == 2, "the service did not reload the rolled-back version"
    wait(browser, lambda d: "rollback" in text_of(d, "#history"), 5, "history lists the rollback")
    shot(browser, "models-after-rollback")
    assert_no_script_errors(browser)
