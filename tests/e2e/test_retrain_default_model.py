"""Issue 15 end to end: what a user of the shipped default model does. Fashion-MNIST test images are written
as class folders named by the model's recorded ``label_folders`` (``T-shirt_top`` for ``T-shirt/top``),
zipped, uploaded to a real admin runner (`python -m imgserve admin`), and retrained with a warm start from
production for one short epoch in a real job subprocess. The job must have compared the candidate with
production on the same held-out images (never "not comparable"), and stored that decision with the
candidate. A subset of the classes is refused with the folder names; a new label set, asked for
explicitly, is registered but never promoted by 'if-better'."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference.metadata import ModelCard
from inference.registry import Registry
from tests.e2e.conftest import Server, free_port, stop, wait_until
from tests.fixtures import fashion_mnist_folders

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
pytest.importorskip("tensorflow", reason="retraining needs the train extra")
ROOT = Path(__file__).resolve().parents[2]
if not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file():
    pytest.skip("needs Debian's dataset-fashion-mnist", allow_module_level=True)

TOKEN = "e2e-retrain-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "fashion-mnist"


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("retrain-default")
    shutil.copytree(ROOT / "models" / NAME, tmp / "models" / NAME, ignore=shutil.ignore_patterns(".lock"))
    registry = Registry(tmp / "models")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMGSERVE_ADMIN_TOKEN": TOKEN, "IMGSERVE_MODEL": NAME}
    log = tmp / "admin.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "imgserve", "admin", "--port", str(port), "--models-dir", str(registry.root),
             "--data-dir", str(tmp / "data")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, log, registry)
    try:
        wait_until(server, "/health")
        yield server
    finally:
        stop(proc)


def _zip(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def _run_job(c: httpx.Client, url: str, folder: Path, **params: Any) -> dict[str, Any]:
    ds = c.post(f"{url}/datasets", files={"file": ("upload.zip", _zip(folder), "application/zip")})
    assert ds.status_code == 201, ds.text
    job = c.post(f"{url}/jobs", json={"datasets": [ds.json()["id"]], "model": NAME, **params})
    assert job.status_code == 202, job.text
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        j = c.get(f"{url}/jobs/{job.json()['id']}").json()
        if j["state"] in ("succeeded", "failed", "cancelled"):
            return j
        time.sleep(1)
    raise AssertionError(f"job did not finish: {j}")


def test_folder_upload_warm_start_is_compared_with_production(admin: Server, tmp_path: Path) -> None:
    registry = admin.registry
    with httpx.Client(headers=AUTH, timeout=120) as c:
        prod, shipped = registry.aliases(NAME)["production"], registry.list_versions(NAME)
        new = max(shipped) + 1
        base = ModelCard.from_dict(c.get(f"{admin.url}/models/{NAME}/versions/{prod}").json())
        assert base.label_folders[0] == "T-shirt_top"
        folders = fashion_mnist_folders(tmp_path / "upload", base, per_class=20)
        assert sorted(p.name for p in folders.iterdir()) == sorted(base.label_folders)

        job = _run_job(c, admin.url, folders, epochs=1, base_version="production", promote="if-better")
        assert job["state"] == "succeeded", (job.get("error"), job.get("log_tail"))
        result, d = job["result"], job["result"]["decision"]
        assert result["start"] == f"warm start from v{prod}" and result["parent_version"] == prod
        assert d["comparable"] is True and "not comparable" not in d["reason"], d
        assert d["production"] == prod and d["candidate"] == new and d["heldout_images"] == 40
        assert isinstance(d["candidate_accuracy"], float) and isinstance(d["production_accuracy"], float)
        assert d["production_accuracy"] >= 0.7  # production knows these classes: the folders were matched to its labels
        assert set(d["per_class"]) == set(base.labels) and d["heldout_fingerprint"]
        assert d["promote"] == (d["candidate_accuracy"] > d["production_accuracy"]) and not d["warnings"]

        cand = registry.card(NAME, new)
        assert cand.labels == base.labels and cand.label_folders == base.label_folders and cand.parent_version == prod
        assert cand.export.get("tta_flip") == base.export.get("tta_flip")  # a warm start answers the way its parent did
        vdir = registry.version_dir(NAME, new)
        for name in ("promotion.json", "MODEL_CARD.md", "confusion.png", "training_curves.png"):
            assert (vdir / name).is_file(), name
        assert "T-shirt_top" in (vdir / "MODEL_CARD.md").read_text()
        shown = {v["version"]: v for v in c.get(f"{admin.url}/models/{NAME}/overview").json()["versions"]}
        assert shown[new]["promotion"]["heldout_fingerprint"] == d["heldout_fingerprint"]
        assert shown[new]["promotion"]["candidate"] == new and shown[prod]["promotion"] is None

        # a subset of the classes is refused, naming the folder names to use
        subset = tmp_path / "subset"
        for folder in ("Trouser", "Bag"):
            shutil.copytree(folders / folder, subset / folder)
        job = _run_job(c, admin.url, subset, epochs=1)
        assert job["state"] == "failed" and "no folder for" in job["error"] and "'T-shirt_top'" in job["error"], job
        assert registry.list_versions(NAME) == [*shipped, new]
        # the same through the CLI against the runner: one error line naming the folders, no traceback
        via = subprocess.run(
            [sys.executable, "-m", "imgserve", "retrain", "--via", admin.url, "--token", TOKEN, "--data", str(subset),
             "--epochs", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        assert via.returncode == 2 and "Traceback" not in via.stderr, via.stderr
        assert "no folder for" in via.stderr and "'T-shirt_top'" in via.stderr and "queued on" in via.stdout

        # a new label set, asked for explicitly, is registered but never promoted by if-better
        production = registry.aliases(NAME)["production"]
        job = _run_job(c, admin.url, subset, epochs=1, base_version="scratch", promote="if-better")
        assert job["state"] == "succeeded", (job.get("error"), job.get("log_tail"))
        d = job["result"]["decision"]
        assert d["comparable"] is False and not d["promote"] and "labels differ" in d["reason"]
        assert registry.aliases(NAME)["production"] == production
