"""The real admin runner (`python -m imgserve admin`) behind the same connection edge as the service (issue 12,
finding 1): an upload over the limit is answered 413 in the one JSON shape, and whole-body-first clients
(urllib, requests) read that answer instead of a connection reset; oversized headers get 431. And `imgserve
retrain --via` pointed at the wrong folder (it zipped all of it in memory: 23.5 GB of /tmp got the CLI
OOM-killed) sends only the class folders' images, and refuses more than the runner takes before reading it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import ServerProcess
from tests.fixtures import image_dir
from tests.ports import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MAX_UPLOAD = 8 * 1024 * 1024  # the default is 200 MiB; the issue sent 260 MB. Same mechanism, less memory.
TOO_BIG = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("admin-edge")
    port = free_port()
    cmd = [sys.executable, "-m", "imgserve", "admin", "--port", str(port), "--models-dir", str(tmp / "models"),
           "--data-dir", str(tmp / "data")]
    env = {"IMGSERVE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "IMGSERVE_ADMIN_TOKEN": ""}
    url = f"http://127.0.0.1:{port}"
    with ServerProcess(cmd, ready_url=url + "/health", log=Path(tmp) / "admin.log", env=env):
        yield url


def test_urllib_reads_the_413_of_an_oversized_zip_upload(admin: str) -> None:
    body = b"PK" + b"\0" * TOO_BIG
    for _ in range(2):
        req = urllib.request.Request(admin + "/datasets", data=body, headers={"Content-Type": "application/zip"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=60)
        assert info.value.code == 413
        answer = json.loads(info.value.read())
        assert answer["type"] == "payload_too_large" and f"the limit is {MAX_UPLOAD + 64 * 1024}" in answer["error"]


def test_requests_reads_the_413_of_an_oversized_multipart_upload(admin: str) -> None:
    data = b"\0" * TOO_BIG
    with requests.Session() as session:
        for _ in range(2):
            r = session.post(admin + "/datasets", files={"file": ("big.zip", data, "application/zip")}, timeout=60)
            assert r.status_code == 413 and r.json()["type"] == "payload_too_large", r.text
        r = session.post(admin + "/datasets", data=data, headers={"Content-Type": "application/zip"}, timeout=60)
        assert r.status_code == 413 and r.json()["type"] == "payload_too_large"
    assert requests.get(admin + "/health", timeout=30).json()["status"] == "ok"


def test_oversized_headers_get_431(admin: str) -> None:
    host, port = admin.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and json.loads(body)["type"] == "headers_too_large"


def _sparse(path: Path, size: int) -> None:
    """A file of ``size`` bytes that takes no disk (and whose reading would take the memory or the time)."""
    with open(path, "wb") as f:
        f.truncate(size)


def _retrain_via(admin: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "IMGSERVE_ADMIN_TOKEN"}
    cmd = [sys.executable, "-m", "imgserve", "retrain", "--via", admin, "--data", str(data), "--epochs", "1"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _datasets(admin: str) -> dict[str, dict[str, object]]:
    return {d["id"]: d for d in requests.get(admin + "/datasets", timeout=30).json()}


def test_retrain_via_uploads_only_the_images_of_the_class_folders(admin: str, tmp_path: Path) -> None:
    data = tmp_path / "mixed"
    image_dir(data / "Trouser", 3, mode="L")
    image_dir(data / "Bag", 4, mode="L", seed=1)
    _sparse(data / "backup.tar", 3 * 2**30)  # what else the folder holds is not read, let alone sent
    (data / "Bag" / "notes.txt").write_text("not an image")
    (data / "Bag" / ".hidden.png").write_bytes(b"editor junk")
    before = _datasets(admin)
    r = _retrain_via(admin, data)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    new = [d for i, d in _datasets(admin).items() if i not in before]
    assert len(new) == 1 and new[0]["classes"] == {"Bag": 4, "Trouser": 3} and new[0]["num_images"] == 7, new


def test_retrain_via_refuses_more_than_the_runner_takes_before_reading_it(admin: str, tmp_path: Path) -> None:
    data = tmp_path / "big"
    image_dir(data / "Trouser", 2, mode="L")
    image_dir(data / "Bag", 2, mode="L")
    _sparse(data / "Bag" / "scan.png", 3 * 2**30)
    before = _datasets(admin)
    r = _retrain_via(admin, data)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "5 images are 3,072.0 MiB; the admin runner accepts uploads of at most 8.0 MiB" in r.stderr, r.stderr
    assert _datasets(admin) == before


def test_retrain_via_a_folder_without_class_folders_is_one_line(admin: str, tmp_path: Path) -> None:
    image_dir(tmp_path / "flat", 0)
    (tmp_path / "flat" / "a.png").write_bytes(b"an image not in a class folder")
    r = _retrain_via(admin, tmp_path / "flat")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "no images in class folders (expected" in r.stderr and r.stderr.count("\n") == 1, r.stderr
