from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.registry import Registry
from tests.s3server import S3Server, running_s3_server


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One real S3 API server (moto_server subprocess) for the whole session; see tests/s3server.py."""
    pytest.importorskip("boto3", reason="the s3 tests need boto3 (serve extra) and moto[server] (dev extra)")
    pytest.importorskip("moto", reason="the s3 tests need moto[server] (dev extra)")
    with running_s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server


@pytest.fixture()
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A fresh bucket, with the AWS_* variables (and a per-test IMGSERVE_CACHE_DIR) set for this test."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("IMGSERVE_CACHE_DIR", str(tmp_path / "s3-cache"))
    for var in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    return s3_server.new_bucket()


@pytest.fixture()
def s3_registry(s3_bucket: str, tmp_path: Path) -> Registry:
    return Registry(f"s3://{s3_bucket}/registry", cache_dir=tmp_path / "s3-cache")
