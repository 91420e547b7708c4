"""TEST HARNESS for the dashboard's end-to-end tests — not the product.

* ``serve``: a minimal inference service (FastAPI + the real ``serving.runtime.ModelRuntime``,
  :mod:`tests.e2e.stand_in_service`) with the contract's routes and a Prometheus ``/metrics`` shaped like the
  real service's. It stands in for ``bentoml serve .`` until ``service.py`` is in this checkout;
  ``inference_command()`` picks the real one with ``IMGSERVE_E2E_SERVICE=bentoml``.
* ``make-keras OUT``: a small Keras CNN trained for a few seconds on synthetic images (a textured patch at a
  random place on a noisy background; class = texture), so Grad-CAM has something real to point at.
* :func:`seed_registry`: a registry with two versions carrying metrics, per-class figures, a confusion
  matrix (as a list in one version, as a PNG in the other) and ``model.keras`` in the production one.
* :class:`ServerProcess`: a subprocess on a free port, waited for until ready, stopped with SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tests.e2e.processes import stop
from tests.e2e.stand_in_service import create_inference_app

REPO = Path(__file__).resolve().parents[2]
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


# ---- processes ----------------------------------------------------------------------------------------
class ServerProcess:
    """``cmd`` in a subprocess (own process group), output to ``log``; ready when ``ready_url`` answers 200."""

    def __init__(self, cmd: list[str], *, ready_url: str, log: Path, env: dict[str, str] | None = None,
                 cwd: Path = REPO, timeout_s: float = 60.0):
        self.cmd, self.ready_url, self.log, self.cwd, self.timeout_s = cmd, ready_url, log, cwd, timeout_s
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        import httpx

        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=self._logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.cmd[:4]} exited with {self.proc.returncode}; see {self.log}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise TimeoutError(f"{self.ready_url} not ready after {self.timeout_s} s; see {self.log}:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            stop(self.proc)
        self._logf.close()


def stand_in_launcher(work: Path) -> Path:
    """An executable the admin runner calls as ``<it> -m imgserve retrain …`` (``IMGSERVE_JOB_PYTHON``); it
    ``exec``s tests/e2e/stand_in_retrain.py, so the job process is the stand-in itself."""
    path = work / "stand-in-python"
    path.write_text(
        "#!/bin/sh\n# test stand-in for `python -m imgserve retrain` (see tests/e2e/stand_in_retrain.py)\n"
        f'[ "$1" = "-m" ] && shift 2\n[ "$1" = "retrain" ] && shift\nexec "{sys.executable}" -m tests.e2e.stand_in_retrain "$@"\n'
    )
    path.chmod(0o755)
    return path


def inference_command(port: int) -> list[str]:
    """The inference service to test against: the real BentoML service (default), or this harness's app."""
    if os.environ.get("IMGSERVE_E2E_SERVICE", "bentoml") == "bentoml":
        return [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port), "--host", "127.0.0.1"]
    return [sys.executable, "-m", "tests.e2e.harness", "serve", "--port", str(port)]


# ---- synthetic data ------------------------------------------------------------------------------------
def band_image(cls: int, classes: int = 10, size: int = 28, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 60, size=(size, size), dtype=np.uint8)
    arr[cls * size // classes:(cls + 1) * size // classes, 4:size - 4] += 180
    return arr


def band_png(cls: int, seed: int = 0, scale: int = 4) -> bytes:
    return _png(band_image(cls, seed=seed), scale)


PATTERNS = 4  # solid, horizontal stripes, vertical stripes, checkerboard


def pattern_image(cls: int, seed: int = 0, size: int = 28, patch: int = 10) -> np.ndarray:
    """A dim noisy background with one bright 10x10 patch at a random place; the class is the patch's
    texture, so a model must find the patch, and Grad-CAM should point at it."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 50, size=(size, size), dtype=np.uint8)
    yy, xx = np.mgrid[0:patch, 0:patch]
    texture = [np.ones_like(yy), (yy // 2) % 2, (xx // 2) % 2, ((yy // 2) + (xx // 2)) % 2][cls % PATTERNS]
    top, left = rng.integers(0, size - patch, size=2)
    arr[top:top + patch, left:left + patch] = np.where(texture > 0, 230, 20).astype(np.uint8)
    return arr


def pattern_png(cls: int, seed: int = 0, scale: int = 4) -> bytes:
    return _png(pattern_image(cls, seed=seed), scale)


def _png(arr: np.ndarray, scale: int) -> bytes:
    img = Image.fromarray(arr, "L").resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_keras(out: Path, classes: int = 10, epochs: int = 10) -> Path:
    """A small CNN with a global-average-pooling head (the architecture Grad-CAM was made for), trained on
    :func:`pattern_image` for the first ``PATTERNS`` of its ``classes`` outputs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(0)
    n = 150 * PATTERNS
    x = np.stack([pattern_image(i % PATTERNS, seed=i) for i in range(n)])[..., None].astype("float32") / 255.0
    y = np.array([i % PATTERNS for i in range(n)])
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(24, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="last_conv"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(classes, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    return out


# ---- registry ---------------------------------------------------------------------------------------------
def metrics_for(acc_fp32: float, acc_int8: float, seed: int, labels: tuple[str, ...] = FASHION) -> dict[str, Any]:
    """Plausible evaluation figures shaped like training's: per-class report and a confusion matrix."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    cm = np.zeros((n, n), dtype=int)
    for i in range(n):
        right = int(100 * np.clip(acc_int8 + rng.normal(0, 0.05), 0.3, 0.99))
        cm[i, i] = right
        for _ in range(100 - right):
            j = int(rng.integers(0, n - 1))
            cm[i, j if j < i else j + 1] += 1
    per_class = {}
    for i, label in enumerate(labels):
        recall = cm[i, i] / cm[i].sum()
        precision = cm[i, i] / max(1, cm[:, i].sum())
        per_class[label] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                            "f1-score": round(float(2 * precision * recall / max(1e-9, precision + recall)), 4),
                            "support": int(cm[i].sum())}
    return {"accuracy": {"fp32": acc_fp32, "int8": acc_int8}, "per_class": per_class,
            "confusion_matrix": cm.tolist(), "heldout_images": int(cm.sum())}


def register_version(registry: Any, name: str, *, seed: int, metrics: dict[str, Any] | None = None,
                     files: dict[str, bytes | Path] | None = None, architecture: str = "tiny-linear",
                     parent: int | None = None, labels: tuple[str, ...] = FASHION) -> Any:
    from tests.fixtures import tiny_card, tiny_onnx_bytes

    data = tiny_onnx_bytes(28, 28, 1, len(labels), seed)
    card = tiny_card(name, classes=len(labels)).replace(
        labels=labels, metrics=metrics or {}, architecture=architecture, parent_version=parent,
        dataset={"name": "synthetic-bands", "images": 1000}, training={"epochs": 4, "batch_size": 32},
    )
    with registry.stage(name) as staged:
        (staged / "model.onnx").write_bytes(data)
        (staged / "model.int8.onnx").write_bytes(data)
        for fname, content in (files or {}).items():
            (staged / fname).write_bytes(content.read_bytes() if isinstance(content, Path) else content)
        return registry.register(staged, card)


def seed_registry(root: Path, name: str, keras_model: Path | None) -> Any:
    """v1: ONNX only, confusion matrix as a list; v2: model.keras + a confusion PNG; production = v2."""
    from admin.confusion_render import render_png
    from inference.registry import Registry

    registry = Registry(root)
    m1 = metrics_for(0.842, 0.838, seed=1)
    register_version(registry, name, seed=0, metrics=m1)
    m2 = metrics_for(0.887, 0.884, seed=2)
    png = render_png(m2.pop("confusion_matrix"), FASHION)
    files: dict[str, bytes | Path] = {"confusion_matrix.png": png}
    if keras_model is not None:
        files["model.keras"] = keras_model
    register_version(registry, name, seed=1, metrics=m2, files=files, architecture="small-cnn", parent=1)
    registry.promote(name, 2, reason="seeded for the e2e test")
    return registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tests.e2e.harness", description="e2e test harness (not the product)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    k = sub.add_parser("make-keras")
    k.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        import uvicorn

        uvicorn.run(create_inference_app(), host="127.0.0.1", port=args.port, log_level="warning")
    else:
        make_keras(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
