"""inference/storage pieces that need no server: URLs, manifests, the lazy boto3 import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from inference.errors import ConfigError, RegistryError
from inference.storage import Manifest, normalize_root
from inference.storage.cache import safe_name
from inference.storage.s3 import parse_url

ROOT = Path(__file__).resolve().parents[2]


def test_registry_urls() -> None:
    assert parse_url("s3://bucket/some/prefix/") == ("bucket", "some/prefix/")
    assert parse_url("s3://bucket") == ("bucket", "")
    with pytest.raises(ConfigError, match="s3://BUCKET"):
        parse_url("s3:///prefix")
    assert normalize_root("s3://b/p") == "s3://b/p"
    assert normalize_root("models") == str((Path.cwd() / "models").resolve())


def test_manifest_round_trip_and_problems(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").write_bytes(b"abc")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_bytes(b"hello")
    (tmp_path / "manifest.json").write_bytes(b"{}")  # never lists itself
    manifest = Manifest.of_dir(tmp_path)
    assert Manifest.from_bytes(manifest.to_bytes()) == manifest
    assert sorted(manifest.files) == ["a.onnx", "sub/b.txt"] and manifest.files["a.onnx"].size == 3
    assert manifest.problem("a.onnx", tmp_path / "a.onnx") is None
    (tmp_path / "a.onnx").write_bytes(b"abd")
    assert "SHA-256" in (manifest.problem("a.onnx", tmp_path / "a.onnx") or "")
    (tmp_path / "a.onnx").write_bytes(b"ab")
    assert "2 bytes" in (manifest.problem("a.onnx", tmp_path / "a.onnx") or "")
    with pytest.raises(RegistryError, match="invalid version manifest"):
        Manifest.from_bytes(b"[]")


@pytest.mark.parametrize("name", ["../escape", "/abs", "a//b", "a/./b", ""])
def test_hostile_manifest_names_are_refused(name: str) -> None:
    with pytest.raises(RegistryError, match="refusing"):
        safe_name(name)


def test_a_local_registry_never_imports_boto3(tmp_path: Path) -> None:
    code = (
        "import sys; from tests.fixtures import register_tiny; from inference.registry import Registry;"
        f"r = Registry({str(tmp_path)!r}); register_tiny(r); r.promote('tiny', 1); r.model_file('tiny', 1);"
        "import service;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 's3transfer')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_an_s3_url_reaches_every_process_unchanged(tmp_path: Path) -> None:
    """A Path field or a .resolve() anywhere would turn s3://b/p into s3:/b/p or /cwd/s3:/b/p."""
    from admin.jobs import JobRunner, JobStore
    from admin.settings import AdminSettings
    from imgserve.cli import build_parser
    from imgserve.commands.serve import serve_command
    from inference.registry import Registry
    from serving.settings import ServeSettings

    url = "s3://bucket/team/registry"
    assert ServeSettings(models_dir=url).models_dir == url
    assert ServeSettings(models_dir=tmp_path).models_dir == str(tmp_path)  # a Path given in code still works
    _, env, _ = serve_command(build_parser().parse_args(["serve", "--models-dir", url]), environ={})
    assert env["IMGSERVE_MODELS_DIR"] == url
    settings = AdminSettings(data_dir=tmp_path, models_dir=url)
    runner = JobRunner(settings, JobStore(settings.jobs_dir), lambda ds: tmp_path, Registry(url))
    job = {"id": "abc", "params": {"datasets": ["ds"], "model": "m", "architecture": "small-cnn", "epochs": 2,
                                   "base_version": "scratch", "promote": "never", "margin": 0.01, "img_size": None}}
    cmd = runner.command(job)
    assert cmd[cmd.index("--models-dir") + 1] == url
    assert Registry(url).root == url and Registry(url).remote
