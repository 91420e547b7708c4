"""The dashboard pages in a real headless browser against admin runners configured otherwise than the scenario's
(test_dashboard_scenario.py), each started by its test beside this module's stack (conftest.py): one whose
retrain jobs run the real ``imgserve retrain`` (the candidate's promotion decision shown on the Models page),
and one with no admin token (loopback clients only, no sign-in).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dashboard.browser import (
    EC,
    By,
    Select,
    assert_no_script_errors,
    drop_file,
    shot,
    sign_in,
    text_of,
    wait,
)
from tests.e2e.dashboard.stack import HAVE_RETRAIN, MODEL, _admin
from tests.e2e.harness import ServerProcess
from tests.fixtures import class_folder_zip
from tests.ports import free_port

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not HAVE_RETRAIN, reason="`imgserve retrain` (imgserve/commands/retrain.py) is not in this checkout; "
                    "the training page was tested with tests/e2e/stand_in_retrain.py instead")
def test_training_with_the_real_retrain_command(browser: Any, models_dir: Path, service: str, work: Path) -> None:
    zip_path = work / "real.zip"
    zip_path.write_bytes(class_folder_zip({"Sandal": 12, "Sneaker": 12}))
    with _admin(models_dir, work / "data-real", service, work / "admin-real.log", None) as proc:
        base = proc.url  # type: ignore[attr-defined]
        sign_in(browser, base)
        browser.get(f"{base}/ui/training")
        wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#job-base option")), 10, "form ready")
        drop_file(browser, "#dropzone", zip_path)
        wait(browser, lambda d: "uploaded" in text_of(d, "#upload-text"), 15, "dataset upload")
        epochs = browser.find_element(By.ID, "job-epochs")
        epochs.clear()
        epochs.send_keys("1")
        Select(browser.find_element(By.ID, "job-base")).select_by_value("scratch")
        Select(browser.find_element(By.ID, "job-promote")).select_by_value("never")
        browser.find_element(By.ID, "job-start").click()
        wait(browser, lambda d: text_of(d, "#jd-state") in ("succeeded", "failed"), 300, "real retrain job finishes")
        shot(browser, "training-real")
        assert text_of(browser, "#jd-state") == "succeeded", text_of(browser, "#jd-log")
        assert "epoch 1 / 1" in text_of(browser, "#jd-epoch")
        outcome = text_of(browser, "#jd-outcome")
        assert "not comparable" in outcome and "labels differ" in outcome, outcome  # a new label set (issue 15)
        version = int(outcome.split(" registered")[0].split("v")[-1])
        # the decision stored with the candidate is shown in its details on the Models page
        browser.get(f"{base}/ui/models")
        wait(browser, EC.presence_of_element_located((By.ID, f"version-{version}")), 10, "the candidate's row")
        browser.find_element(By.CSS_SELECTOR, f"#version-{version} button.ghost").click()
        wait(browser, EC.presence_of_element_located((By.ID, f"promotion-{version}")), 10, "promotion decision")
        decision = text_of(browser, f"#promotion-{version}")
        assert "not promoted" in decision and "policy never" in decision and "labels differ" in decision, decision
        assert "Sandal, Sneaker" in text_of(browser, f"#details-{version} .label-folders")
        shot(browser, "models-promotion-decision")
        assert_no_script_errors(browser)



def test_without_a_token_configured_pages_work_for_local_clients(browser: Any, models_dir: Path, service: str, work: Path) -> None:
    """No IMGSERVE_ADMIN_TOKEN: the runner serves loopback clients only, and the pages need no sign-in."""
    port = free_port()
    cmd = [sys.executable, "-m", "imgserve", "admin", "--port", str(port), "--models-dir", str(models_dir),
           "--data-dir", str(work / "data-open"), "--service-url", service]
    env = {"IMGSERVE_ADMIN_TOKEN": "", "IMGSERVE_MODEL": MODEL}
    base = f"http://127.0.0.1:{port}"
    with ServerProcess(cmd, ready_url=f"{base}/health", log=work / "admin-open.log", env=env):
        browser.get(f"{base}/ui/models")
        wait(browser, EC.presence_of_element_located((By.ID, "version-2")), 10, "models table without sign-in")
        assert "loopback only" in text_of(browser, "#auth-mode")
        assert not browser.find_element(By.ID, "logout").is_displayed()
        browser.get(f"{base}/ui/login")
        wait(browser, EC.visibility_of_element_located((By.ID, "no-token-note")), 5, "no-token note on the login page")
