"""The real admin runner (`python -m imgserve admin`) behind the same connection edge as the service (issue 12,
finding 1): an upload over the limit is answered 413 in the one JSON shape, and whole-body-first clients
(urllib, requests) read that answer instead of a connection reset; oversized headers get 431."""

from __future__ import annotations

import json
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import ServerProcess
from tests.ports import free_port

pytestmark = pytest.mark.e2e

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
