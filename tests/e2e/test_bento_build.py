"""``bentoml build`` with the project's bentofile.yaml: succeeds, ships only serving code and the default
model's serving files, and requires no TensorFlow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inference.registry import Registry
from serving.settings import DEFAULT_MODEL
from tests.fixtures import register_tiny

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "tf-keras")


def test_bentoml_build(tmp_path: Path) -> None:
    # A copy of the serving files plus decoys that must stay out, so the result does not depend on what
    # else happens to be in this checkout (trained runs, data sets, a registry with many versions).
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("service.py", "bentofile.yaml"):
        shutil.copy2(ROOT / name, ctx / name)
    for pkg in ("inference", "serving"):
        shutil.copytree(ROOT / pkg, ctx / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for decoy in ("training/train.py", "export/to_onnx.py", "tests/test_x.py", "data/big.bin", "runs/r/model.keras"):
        (ctx / decoy).parent.mkdir(parents=True, exist_ok=True)
        (ctx / decoy).write_text("import tensorflow\n")
    registry = Registry(ctx / "models")
    card = register_tiny(registry, name=DEFAULT_MODEL)
    (registry.version_dir(DEFAULT_MODEL, card.version) / "model.keras").write_bytes(b"keras weights")
    register_tiny(registry, name="experiment")  # another model in the registry: not shipped

    home = tmp_path / "bentoml-home"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ctx)}
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(ctx), "-o", "tag"],
        cwd=ctx, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "imgserve:" in out.stdout

    (bento,) = [p for p in (home / "bentos" / "imgserve").iterdir() if p.name != "latest"]
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().lower()
    assert "onnxruntime" in requirements and "bentoml" in requirements
    assert not [f for f in FORBIDDEN if f in requirements], requirements

    src = bento / "src"
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert {"service.py", "serving/runtime.py", "inference/session.py"} <= files
    version = f"models/{DEFAULT_MODEL}/versions/{card.version}"
    assert {f"{version}/model.onnx", f"{version}/model.int8.onnx", f"{version}/metadata.json"} <= files
    assert f"models/{DEFAULT_MODEL}/aliases.json" in files
    leaked = [f for f in files if f.split("/")[0] in {"training", "export", "tests", "data", "runs"}
              or f.endswith(".keras") or "experiment" in f]
    assert not leaked, leaked
    assert "service: service:ImgServe" in (bento / "bento.yaml").read_text()
