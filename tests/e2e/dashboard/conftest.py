"""The dashboard tests' stack, one per test module (like every e2e server, tests/e2e/conftest.py): a small Keras
model trained for Grad-CAM (started first: TensorFlow start-up is the slowest step), a headless chromium, a
registry seeded with two versions, the inference service (``python -m bentoml serve .``, or harness.py's
stand-in with ``IMGSERVE_E2E_SERVICE=harness``) and an admin runner whose retrain jobs run
tests/e2e/stand_in_retrain.py. Each module gets a fresh registry, so no module depends on another's leftovers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.dashboard.stack import HAVE_TF, MODEL, TOKEN, _admin
from tests.e2e.harness import (
    REPO,
    ServerProcess,
    inference_command,
    seed_registry,
    stand_in_launcher,
)
from tests.ports import free_port


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard")


@pytest.fixture(scope="module")
def keras_build(work: Path) -> Iterator[subprocess.Popen[bytes] | None]:
    """Start training the small Keras model at once (TensorFlow start-up is the slowest step)."""
    if not HAVE_TF:
        yield None
        return
    out = work / "patterns.keras"
    log = open(work / "make-keras.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.harness", "make-keras", str(out)], cwd=REPO,
                            env={**_env(), "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=log, stderr=subprocess.STDOUT)
    proc.out = out  # type: ignore[attr-defined]
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    log.close()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def browser(keras_build: subprocess.Popen[bytes] | None, work: Path) -> Iterator[Any]:
    # imported here, not at the top: this conftest must load where chromium or selenium is missing
    from tests.e2e.dashboard.browser import CHROMEDRIVER, CHROMIUM, Service, webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1360,900",
                "--hide-scrollbars", f"--user-data-dir={work / 'chrome-profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def models_dir(keras_build: subprocess.Popen[bytes] | None, work: Path) -> Path:
    keras_model = None
    if keras_build is not None:
        rc = keras_build.wait(timeout=180)
        assert rc == 0, (work / "make-keras.log").read_text()[-3000:]
        keras_model = keras_build.out  # type: ignore[attr-defined]
    seed_registry(work / "models", MODEL, keras_model)
    return work / "models"


@pytest.fixture(scope="module")
def service(models_dir: Path, work: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"IMGSERVE_MODELS_DIR": str(models_dir), "IMGSERVE_MODEL": MODEL, "IMGSERVE_POLL_INTERVAL_S": "1",
           "IMGSERVE_GRPC_PORT": "0", "IMGSERVE_ADMIN_TOKEN": TOKEN, "IMGSERVE_LANES": "1", "IMGSERVE_DECODE_THREADS": "1",
           # one small worker, as before the one-worker-per-core default: the serving page's error table once
           # showed no 400s under 2 workers on a loaded machine (not reproduced by hand; see the session note)
           "IMGSERVE_WORKERS": "1"}
    with ServerProcess(inference_command(port), ready_url=f"{url}/readyz", log=work / "service.log", env=env, timeout_s=90):
        yield url


@pytest.fixture(scope="module")
def admin(models_dir: Path, service: str, work: Path) -> Iterator[str]:
    with _admin(models_dir, work / "data", service, work / "admin.log", stand_in_launcher(work)) as proc:
        yield proc.url  # type: ignore[attr-defined]
