"""The registry on object storage, against a real S3 API server process (moto_server, tests/s3server.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from imgserve.cli import main as cli
from inference.errors import NotFound, RegistryError
from inference.registry import Registry
from tests.fixtures import race_two_promotes, register_tiny, tiny_onnx_bytes
from tests.s3server import S3Server

ROOT = Path(__file__).resolve().parents[2]
ClientError = pytest.importorskip("botocore.exceptions", reason="needs boto3 (serve extra) and moto[server] (dev extra)").ClientError


def test_the_server_honours_conditional_writes(s3_server: S3Server, s3_bucket: str) -> None:
    c = s3_server.client()
    etag = c.put_object(Bucket=s3_bucket, Key="k", Body=b"1", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError, match="PreconditionFailed"):
        c.put_object(Bucket=s3_bucket, Key="k", Body=b"2", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        c.put_object(Bucket=s3_bucket, Key="k", Body=b"3", IfMatch='"0123"')
    c.put_object(Bucket=s3_bucket, Key="k", Body=b"4", IfMatch=etag)
    assert c.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"4"


def test_layout_register_promote_rollback(s3_registry: Registry, s3_server: S3Server, s3_bucket: str) -> None:
    for seed in range(3):
        register_tiny(s3_registry, seed=seed)
    assert s3_registry.list_models() == ["tiny"] and s3_registry.list_versions("tiny") == [1, 2, 3]
    keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert {"registry/tiny/aliases.json", "registry/tiny/versions/1/manifest.json", "registry/tiny/versions/1/model.onnx",
            "registry/tiny/versions/1/model.int8.onnx", "registry/tiny/versions/1/metadata.json"} <= keys
    tag = s3_registry.aliases_tag("tiny")
    s3_registry.promote("tiny", 3, reason="better")
    assert s3_registry.aliases_tag("tiny") != tag
    assert s3_registry.resolve("tiny") == 3 and s3_registry.resolve("tiny", "previous") == 1
    s3_registry.rollback("tiny")
    assert s3_registry.resolve("tiny") == 1
    assert [h["action"] for h in s3_registry.aliases("tiny")["history"]] == ["register", "promote", "rollback"]
    assert s3_registry.card("tiny", 2).version == 2
    with pytest.raises(NotFound, match="no version 7"):
        s3_registry.resolve("tiny", 7)


def test_two_promotes_at_once_one_wins_the_other_gets_a_conflict(s3_registry: Registry) -> None:
    for seed in range(3):
        register_tiny(s3_registry, seed=seed)
    outcome = race_two_promotes(s3_registry)  # both read the same ETag before either writes
    winners = [v for v, o in outcome.items() if o == "won"]
    assert len(winners) == 1, outcome
    assert "changed while this promote was being written" in outcome[({2, 3} - set(winners)).pop()]
    assert s3_registry.resolve("tiny") == winners[0]


RACER = """
import sys
from inference.errors import Conflict
from inference.registry import Registry
r = Registry(sys.argv[1]); won = lost = 0
for i in range(int(sys.argv[2])):
    try:
        r.promote("tiny", 2 + (i + int(sys.argv[3])) % 2, reason=sys.argv[3]); won += 1
    except Conflict:
        lost += 1
print(won, lost)
"""


def test_two_admin_processes_promoting_lose_no_update(s3_registry: Registry) -> None:
    """Two processes promote 25 times each, as fast as they can: every promote either lands in the history or
    was told it conflicted; none is silently overwritten."""
    for seed in range(3):
        register_tiny(s3_registry, seed=seed)
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(s3_registry.root), "25", str(k)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
             for k in range(2)]
    results = [tuple(map(int, p.communicate(timeout=180)[0].split())) for p in procs]
    won = sum(w for w, _ in results)
    lost = sum(lo for _, lo in results)
    assert won + lost == 50
    history = s3_registry.aliases("tiny")["history"]
    assert len([h for h in history if h["action"] == "promote"]) == won
    print(f"promotes: {won} landed, {lost} conflicts")


def test_concurrent_exports_never_share_a_number(s3_registry: Registry) -> None:
    versions: list[int] = []
    threads = [threading.Thread(target=lambda s=s: versions.append(register_tiny(s3_registry, seed=s).version))
               for s in range(4)]
    [t.start() for t in threads]
    [t.join(timeout=120) for t in threads]
    assert sorted(versions) == [1, 2, 3, 4] == s3_registry.list_versions("tiny")
    labels = {s3_registry.card("tiny", v).version for v in versions}
    assert labels == {1, 2, 3, 4}  # each metadata.json carries its own number


def test_a_partly_uploaded_version_is_invisible(s3_registry: Registry, s3_server: S3Server, s3_bucket: str) -> None:
    register_tiny(s3_registry)
    c = s3_server.client()
    # a writer that died after claiming v2 and uploading one file, before the manifest
    c.put_object(Bucket=s3_bucket, Key="registry/tiny/versions/2/.claim", Body=b"{}")
    c.put_object(Bucket=s3_bucket, Key="registry/tiny/versions/2/model.onnx", Body=tiny_onnx_bytes(28, 28, 1, 10, 1))
    assert s3_registry.list_versions("tiny") == [1]
    assert s3_registry.resolve("tiny", "latest") == 1
    with pytest.raises(NotFound, match="no version 2"):
        s3_registry.resolve("tiny", 2)
    with pytest.raises(NotFound):
        s3_registry.promote("tiny", 2)
    assert register_tiny(s3_registry, seed=3).version == 3  # the burned number is never reused


def test_cache_downloads_once_verifies_and_replaces_a_corrupt_copy(s3_registry: Registry, s3_server: S3Server, s3_bucket: str) -> None:
    register_tiny(s3_registry)
    path = s3_registry.model_file("tiny", 1, "fp32")
    good = path.read_bytes()
    assert path.is_relative_to(Path(os.environ["IMGSERVE_CACHE_DIR"]))
    first_inode = path.stat().st_ino
    assert s3_registry.model_file("tiny", 1, "fp32").stat().st_ino == first_inode  # no second download
    path.write_bytes(b"\0" * len(good))  # same size, wrong bytes: only the hash can tell
    again = Registry(s3_registry.root, cache_dir=os.environ["IMGSERVE_CACHE_DIR"]).model_file("tiny", 1, "fp32")
    assert again.read_bytes() == good
    again.write_bytes(good[:100])  # truncated, seen by the same process
    assert s3_registry.model_file("tiny", 1, "fp32").read_bytes() == good
    # the store itself holds bad bytes: refuse to load them
    s3_server.client().put_object(Bucket=s3_bucket, Key="registry/tiny/versions/1/model.int8.onnx", Body=b"bad")
    fresh = Registry(s3_registry.root, cache_dir=Path(os.environ["IMGSERVE_CACHE_DIR"]) / "other")
    with pytest.raises(RegistryError, match="does not match its manifest"):
        fresh.model_file("tiny", 1, "int8")


def test_models_copy_round_trip(tmp_path: Path, s3_bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    local = Registry(tmp_path / "a")
    for seed in range(2):
        register_tiny(local, seed=seed)
    local.promote("tiny", 2)
    url = f"s3://{s3_bucket}/published"
    assert cli(["models", "copy", str(local.root), url]) == 0
    assert "tiny: copied v1, v2" in capsys.readouterr().out
    remote = Registry(url)
    assert remote.list_versions("tiny") == [1, 2] and remote.resolve("tiny") == 2
    assert cli(["models", "rollback", "tiny", "--models-dir", url]) == 0
    assert cli(["models", "list", "--models-dir", url]) == 0
    listed = capsys.readouterr().out
    assert "tiny: production -> v1 (previous v2)" in listed and "production" in listed.splitlines()[-2]
    assert cli(["models", "promote", "tiny", "2", "--models-dir", url]) == 0
    assert cli(["models", "copy", url, str(tmp_path / "b"), "--model", "tiny"]) == 0
    back = Registry(tmp_path / "b")
    for v in (1, 2):
        for name in ("model.onnx", "model.int8.onnx", "metadata.json"):
            assert (back.version_dir("tiny", v) / name).read_bytes() == (local.version_dir("tiny", v) / name).read_bytes()
    assert back.aliases("tiny") == remote.aliases("tiny")  # history included
    assert cli(["models", "copy", str(local.root), url]) == 0  # again: nothing to do
    assert "copied none, already there v1, v2" in capsys.readouterr().out
    other = Registry(tmp_path / "c")
    register_tiny(other, seed=7)  # a different v1
    assert cli(["models", "copy", str(other.root), url]) == 2
    assert "versions are immutable" in capsys.readouterr().err
    assert remote.card("tiny", 1) == local.card("tiny", 1)  # the published v1 was left as it was


def test_two_admin_runners_promoting_at_once_get_200_or_409(s3_registry: Registry, tmp_path: Path) -> None:
    """Two admin runners (two apps, each with its own registry client) on one s3:// registry, promoting at the
    same time: every answer is 200 or a 409 conflict in the one JSON error shape, and every 200 is in the
    alias history (no lost update)."""
    from fastapi.testclient import TestClient

    from admin.app import create_app
    from admin.settings import AdminSettings

    for seed in range(3):
        register_tiny(s3_registry, seed=seed)
    statuses: list[int] = []
    conflicts: list[dict[str, str]] = []
    start = threading.Barrier(2)

    def runner(k: int) -> None:
        settings = AdminSettings(models_dir=str(s3_registry.root), data_dir=tmp_path / f"data{k}", service_url=None,
                                 cache_dir=tmp_path / f"cache{k}", admin_token="token")
        with TestClient(create_app(settings), headers={"Authorization": "Bearer token"}) as client:
            start.wait(timeout=30)
            for i in range(15):
                r = client.post("/models/tiny/promote", json={"version": 2 + (i + k) % 2, "reason": f"runner {k}"})
                statuses.append(r.status_code)
                if r.status_code == 409:
                    conflicts.append(r.json())
            listing = client.get("/models/tiny/versions").json()
            assert [v["version"] for v in listing["versions"]] == [1, 2, 3]

    threads = [threading.Thread(target=runner, args=(k,)) for k in range(2)]
    [t.start() for t in threads]
    [t.join(timeout=180) for t in threads]
    assert len(statuses) == 30 and set(statuses) <= {200, 409}, statuses
    assert all(c["type"] == "conflict" and "changed while this promote" in c["error"] for c in conflicts)
    promotes = [h for h in s3_registry.aliases("tiny")["history"] if h["action"] == "promote"]
    assert len(promotes) == statuses.count(200)
    print(f"admin promotes: {statuses.count(200)} x 200, {statuses.count(409)} x 409")
