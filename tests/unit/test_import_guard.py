"""The serving path must never import TensorFlow (DESIGN.md: inference/ is TF-free)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules_after_import(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_inference_does_not_import_tensorflow() -> None:
    mods = _modules_after_import(
        "import inference, inference.batcher, inference.imagecodec, inference.preprocess, inference.session, inference.registry"
    )
    assert "inference.session" in mods
    assert not {m for m in mods if m.split(".")[0] in {"tensorflow", "keras", "tf2onnx"}}


def test_service_does_not_import_tensorflow() -> None:
    """What a serving worker imports: the BentoML service file and everything it loads at startup."""
    mods = _modules_after_import(
        "import service, serving.runtime, serving.http, serving.metrics, imgserve.cli, imgserve.commands.serve"
    )
    assert "service" in mods and "bentoml" in mods and "serving.runtime" in mods
    assert not {m for m in mods if m.split(".")[0] in {"tensorflow", "keras", "tf2onnx", "tf_keras"}}


def test_service_import_stays_light() -> None:
    """BentoML's arbiter imports service.py only to read its config: no numpy/ONNX Runtime/Pillow there
    (they load in the worker), which keeps cold start short."""
    mods = _modules_after_import("import service")
    assert not {m for m in mods if m.split(".")[0] in {"numpy", "onnxruntime", "PIL", "prometheus_client"}}
