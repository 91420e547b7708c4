from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from admin.app import create_app
from admin.settings import AdminSettings
from inference.registry import Registry
from tests.fixtures import class_folder_zip, encode_image, register_tiny, sample_image

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def client(tmp_path: Path):  # noqa: ANN201
    settings = AdminSettings(admin_token=TOKEN, models_dir=tmp_path / "models", data_dir=tmp_path / "data", service_url=None, model="tiny")
    with TestClient(create_app(settings)) as c:
        yield c


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "auth": True, "max_upload_bytes": 200 * 2**20}


@pytest.mark.parametrize("path", ["/datasets", "/jobs", "/models", "/models/tiny/versions"])
def test_401_without_or_with_wrong_token(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 401 and r.json()["type"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path, headers={"Authorization": TOKEN}).status_code == 401


def test_upload_zip_and_list(client: TestClient) -> None:
    r = client.post("/datasets", headers=AUTH, files={"file": ("d.zip", class_folder_zip({"a": 2, "b": 3}), "application/zip")})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["classes"] == {"a": 2, "b": 3}
    assert client.get(f"/datasets/{ds['id']}", headers=AUTH).json() == ds
    assert [d["id"] for d in client.get("/datasets", headers=AUTH).json()] == [ds["id"]]
    raw = client.post("/datasets", headers={**AUTH, "Content-Type": "application/zip"}, content=class_folder_zip({"a": 2, "c": 2}))
    assert raw.status_code == 201
    imgs = client.post(
        "/datasets", headers=AUTH,
        files=[("images", (f"{i}.png", encode_image(sample_image(seed=i)), "image/png")) for i in range(2)],
        data={"label": "z", "base": ds["id"]},
    )
    assert imgs.status_code == 201 and imgs.json()["classes"] == {"a": 2, "b": 3, "z": 2}


def test_bad_zips_are_400_and_write_nothing(client: TestClient, tmp_path: Path) -> None:
    buf = io.BytesIO()
    png = encode_image(sample_image())
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1.png", png)
        zf.writestr("../../escape.png", png)
    r = client.post("/datasets", headers=AUTH, files={"file": ("d.zip", buf.getvalue(), "application/zip")})
    assert r.status_code == 400 and "outside the archive" in r.json()["error"]
    assert client.get("/datasets", headers=AUTH).json() == []
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "data" / "escape.png").exists()
    r = client.post("/datasets", headers=AUTH, files={"wrong": ("d.zip", b"x", "application/zip")})
    assert r.status_code == 400 and "'file'" in r.json()["error"]
    r = client.post("/datasets", headers=AUTH, data={"x": "y"})
    assert r.status_code == 415


def test_versions_promote_rollback(client: TestClient, tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    register_tiny(reg, seed=0)
    register_tiny(reg, seed=1)
    body = client.get("/models/tiny/versions", headers=AUTH).json()
    assert [v["version"] for v in body["versions"]] == [1, 2] and body["aliases"]["production"] == 1
    r = client.post("/models/tiny/promote", headers=AUTH, json={"version": 2, "reason": "manual"})
    assert r.status_code == 200 and r.json()["aliases"] == {"production": 2, "previous": 1}
    assert r.json()["service"]["notified"] is False
    r = client.post("/models/tiny/rollback", headers=AUTH)
    assert r.json()["aliases"] == {"production": 1, "previous": 2}
    assert reg.resolve("tiny") == 1
    cmp = client.get("/models/tiny/compare", headers=AUTH, params={"a": 2}).json()
    assert cmp["a"]["version"] == 2 and cmp["b"]["version"] == 1 and cmp["same_labels"]
    assert client.post("/models/tiny/promote", headers=AUTH, json={"version": 9}).status_code == 404
    assert client.post("/models/nope/rollback", headers=AUTH).status_code == 404


def test_promote_if_better_compares_on_a_dataset(client: TestClient, tmp_path: Path) -> None:
    reg = Registry(tmp_path / "models")
    register_tiny(reg, seed=0, classes=2)
    register_tiny(reg, seed=1, classes=2)
    zip_bytes = class_folder_zip({"class_0": 4, "class_1": 4})
    ds = client.post("/datasets", headers=AUTH, files={"file": ("d.zip", zip_bytes, "application/zip")}).json()
    r = client.post("/models/tiny/promote", headers=AUTH, json={"version": 2, "policy": "if-better", "dataset": ds["id"]})
    assert r.status_code == 200
    d = r.json()["decision"]
    assert d["heldout_images"] == 8 and d["candidate"] == 2 and d["production"] == 1
    assert 0 <= d["candidate_accuracy"] <= 1 and 0 <= d["production_accuracy"] <= 1
    assert r.json()["promoted"] == (d["candidate_accuracy"] > d["production_accuracy"])
    assert reg.resolve("tiny") == (2 if r.json()["promoted"] else 1)


def test_job_validation(client: TestClient) -> None:
    assert client.post("/jobs", headers=AUTH, json={}).status_code == 400
    assert client.post("/jobs", headers=AUTH, json={"datasets": ["nope"]}).status_code == 404
    ds = client.post("/datasets", headers=AUTH, files={"file": ("d.zip", class_folder_zip({"a": 2, "b": 2}), "application/zip")}).json()
    r = client.post("/jobs", headers=AUTH, json={"datasets": [ds["id"]], "architecture": "resnet9000"})
    assert r.status_code == 400 and "architecture: Input should be" in r.json()["error"]
    assert client.get("/jobs/doesnotexist", headers=AUTH).status_code == 404


def test_no_token_means_loopback_only(tmp_path: Path) -> None:
    settings = AdminSettings(admin_token=None, models_dir=tmp_path / "m", data_dir=tmp_path / "d", service_url=None)
    with TestClient(create_app(settings), client=("203.0.113.5", 5000)) as remote:
        r = remote.get("/datasets")
        assert r.status_code == 403 and r.json()["type"] == "forbidden" and "IMGSERVE_ADMIN_TOKEN" in r.json()["error"]
    with TestClient(create_app(settings), client=("127.0.0.1", 5000)) as local:
        assert local.get("/datasets").status_code == 200


def test_cli_refuses_public_bind_without_token(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from imgserve.cli import main

    monkeypatch.delenv("IMGSERVE_ADMIN_TOKEN", raising=False)
    assert main(["admin", "--host", "0.0.0.0", "--port", "0"]) == 2
    assert "refusing to listen on 0.0.0.0 without a token" in capsys.readouterr().err
