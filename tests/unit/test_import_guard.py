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
