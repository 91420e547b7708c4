"""Issue #6 end to end: a real admin runner (`python -m imgserve admin`) and a real inference service
(`python -m bentoml serve .`) sharing one registry. Upload a generated class-folder zip, retrain in a job
subprocess, promotion by policy, the service follows, rollback; requests to the service never fail.
Then jobs killed mid-training (cancel, and kill -9 of the job process) leave the registry untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference.registry import Registry
from tests.e2e.conftest import Server, free_port, running_server, stop, wait_until
from tests.fixtures import class_folder_zip, encode_image, register_tiny, sample_image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
pytest.importorskip("tensorflow", reason="retraining needs the train extra")

TOKEN = "e2e-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLASSES = {"class_0": 20, "class_1": 20, "class_2": 20}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("admin-e2e")
    registry = Registry(tmp / "models")
    register_tiny(registry, classes=3)  # v1: a random linear model over the same 3 class names
    with running_server(registry, tmp, poll_interval_s=1, admin_token=TOKEN) as service:
        port = free_port()
        log = tmp / "admin.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "IMGSERVE_ADMIN_TOKEN": TOKEN, "IMGSERVE_MODEL": "tiny"}
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "imgserve", "admin", "--port", str(port), "--models-dir", str(registry.root),
                 "--data-dir", str(tmp / "data"), "--service-url", service.url],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        admin = Server(f"http://127.0.0.1:{port}", proc, log, registry)
        try:
            wait_until(admin, "/health")
            yield service, admin.url
        finally:
            stop(proc)


class Prober:
    """Keeps /predict busy from a thread and counts every answer."""

    def __init__(self, url: str):
        self.url, self.statuses, self.versions = url, Counter[int](), set[int]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.image = encode_image(sample_image(), "PNG")

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self._stop.is_set():
                try:
                    r = c.post("/predict", content=self.image, headers={"content-type": "image/png"})
                    self.statuses[r.status_code] += 1
                    if r.status_code == 200:
                        self.versions.add(r.json()["model"]["version"])
                except httpx.HTTPError as exc:
                    self.statuses[type(exc).__name__] += 1  # type: ignore[index]
                time.sleep(0.02)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _job(client: httpx.Client, admin: str, job_id: str, until: tuple[str, ...], timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"{admin}/jobs/{job_id}").json()
        if job["state"] in until:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not in {until} after {timeout}s: {job}")


def _served_version(service: Server, want: int, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    version = -1
    while time.monotonic() < deadline:
        version = httpx.get(f"{service.url}/model").json()["version"]
        if version == want:
            break
        time.sleep(0.2)
    return version


def test_upload_retrain_promote_rollback_without_failed_requests(stack: tuple[Server, str]) -> None:
    service, admin = stack
    registry = service.registry
    with Prober(service.url) as probe, httpx.Client(headers=AUTH, timeout=60) as c:
        ds = c.post(f"{admin}/datasets", files={"file": ("d.zip", class_folder_zip(CLASSES, seed=1), "application/zip")})
        assert ds.status_code == 201, ds.text
        # 8 short epochs (about a second each): the candidate now trains at production's 28x28x1 (it used to
        # get 64x64x3 and be scored against a model of another shape); 3 epochs left it too unsure for INT8
        job = c.post(f"{admin}/jobs", json={"datasets": [ds.json()["id"]], "model": "tiny", "epochs": 8, "promote": "if-better"})
        assert job.status_code == 202, job.text
        done = _job(c, admin, job.json()["id"], ("succeeded", "failed", "cancelled"))
        assert done["state"] == "succeeded", (done.get("error"), done.get("log_tail"))
        result = done["result"]
        assert result["candidate_version"] == 2 and registry.list_versions("tiny") == [1, 2]
        decision = result["decision"]
        assert decision["policy"] == "if-better" and decision["production"] == 1 and decision["heldout_images"] >= 9
        # the learnable generated classes vs a random model: the policy must pick the candidate
        assert decision["candidate_accuracy"] > decision["production_accuracy"] and decision["promote"], decision
        card = registry.card("tiny", 2)
        assert {"fp32", "int8"} <= set(card.metrics["accuracy"]) and card.metrics["accuracy"]["int8"] > 0.5
        assert registry.aliases("tiny")["production"] == 2
        assert any(h["action"] == "promote" and h["version"] == 2 for h in registry.aliases("tiny")["history"])
        assert _served_version(service, 2) == 2
        assert done["service_reload"]["notified"] is True
        versions = c.get(f"{admin}/models/tiny/versions").json()
        assert [v["version"] for v in versions["versions"]] == [1, 2] and versions["aliases"]["production"] == 2

        rb = c.post(f"{admin}/models/tiny/rollback", json={"reason": "e2e"})
        assert rb.status_code == 200 and rb.json()["aliases"]["production"] == 1
        assert _served_version(service, 1) == 1
        time.sleep(0.5)
    assert set(probe.statuses) == {200}, probe.statuses
    assert sum(probe.statuses.values()) > 50 and probe.versions >= {1, 2}


def _snapshot(registry: Registry) -> tuple[list[int], dict[str, Any], list[str]]:
    vdir = registry.model_dir("tiny") / "versions"
    return registry.list_versions("tiny"), {k: v for k, v in registry.aliases("tiny").items() if k != "history"}, sorted(p.name for p in vdir.iterdir())


def _start_long_job(c: httpx.Client, admin: str) -> str:
    ds = c.post(f"{admin}/datasets", files={"file": ("d.zip", class_folder_zip({"a": 30, "b": 30}, seed=2), "application/zip")}).json()
    job = c.post(f"{admin}/jobs", json={"datasets": [ds["id"]], "model": "tiny", "epochs": 400, "promote": "force", "base_version": "scratch"}).json()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # wait until it is really training (an epoch done)
        j = c.get(f"{admin}/jobs/{job['id']}").json()
        if any(e.get("event") == "epoch" for e in j.get("history", [])):
            return job["id"]
        assert j["state"] in ("queued", "running"), j
        time.sleep(0.5)
    raise AssertionError("the job never reached its first epoch")


def test_cancel_and_kill_leave_the_registry_unchanged(stack: tuple[Server, str]) -> None:
    service, admin = stack
    registry = service.registry
    before = _snapshot(registry)
    with httpx.Client(headers=AUTH, timeout=60) as c:
        job_id = _start_long_job(c, admin)
        cancelled = c.delete(f"{admin}/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        assert cancelled.json()["error"] == "cancelled by request"
        assert _snapshot(registry) == before

        job_id = _start_long_job(c, admin)
        pid = c.get(f"{admin}/jobs/{job_id}").json()["pid"]
        os.kill(pid, signal.SIGKILL)
        job = _job(c, admin, job_id, ("failed", "succeeded", "cancelled"), timeout=60)
        assert job["state"] == "failed" and "killed by signal 9 (SIGKILL)" in job["error"]
        assert _snapshot(registry) == before
        assert not [p for p in (registry.model_dir("tiny") / "versions").iterdir() if p.name.startswith(".staging")]
        # the runner keeps working after a killed job
        assert c.get(f"{admin}/health").json()["status"] == "ok"
        assert c.post(f"{admin}/jobs/{job_id}").status_code == 405
        assert json.loads((registry.model_dir("tiny") / "aliases.json").read_text())["production"] == before[1]["production"]
