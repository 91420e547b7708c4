"""Workloads: which registered model is served, and which corpus the clients send.

A workload is a registry root + model name + corpus kind. Two presets match the project's two regimes:

- ``fashion-mnist`` (overhead-bound): the default model, 28x28x1, tiny PNGs. ORT takes microseconds per
  image, so HTTP parsing, decoding and the batcher's bookkeeping dominate.
- ``mobilenetv2`` (compute-bound): MobileNetV2 alpha=1.0, 224x224x3 INT8, ~640x480 photo-like JPEGs. ORT and
  JPEG decode dominate; batching and thread placement matter.

Anything else is ``NAME=MODELS_DIR:MODEL:CORPUS`` on the command line (a fresh registry from the export
package, a tiny test model...). A preset may name a ``prepare`` hook (``module:function``, called as
``fn(Registry(models_dir), model)``) that produces the model when it is missing; it runs only when asked
(``--prepare`` or ``benchmarks prepare``), because it may take minutes (TensorFlow, export, calibration).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from inference.errors import ImgServeError
from inference.metadata import ModelCard
from inference.registry import KERAS_FILE, Registry

from .corpus import KINDS

BENCH_MODELS_DIR = Path(__file__).resolve().parent / ".cache" / "models"


class Unavailable(Exception):
    """A workload or target that cannot run here; the message says why and how to fix it."""


@dataclass(frozen=True)
class Workload:
    name: str
    model: str
    corpus: str
    models_dir: Path | None = None  # None: $IMGSERVE_MODELS_DIR or models/
    version: str = "production"
    bound: str = ""  # "overhead" | "compute" (for the report)
    description: str = ""
    prepare: str | None = None
    corpus_count: int | None = None

    def registry_root(self) -> Path:
        root = self.models_dir or Path(os.environ.get("IMGSERVE_MODELS_DIR", "models"))
        return root.resolve()


PRESETS: dict[str, Workload] = {
    "fashion-mnist": Workload(
        "fashion-mnist",
        model="fashion-mnist",
        corpus="png-28-gray",
        bound="overhead",
        description="default Fashion-MNIST CNN (28x28x1) with 28x28 grayscale PNGs: per-request overhead dominates",
    ),
    "mobilenetv2": Workload(
        "mobilenetv2",
        model="mobilenetv2",
        corpus="jpeg-640x480",
        bound="compute",
        description="MobileNetV2 alpha=1.0 224x224x3 INT8 with ~640x480 photo-like JPEGs: decode + ORT dominate",
        # A random-weight MobileNetV2 (speed only) exported through the real export path into a git-ignored
        # registry, so the shipped models/ stays small. Or pass mobilenetv2=DIR:NAME:jpeg-640x480.
        models_dir=BENCH_MODELS_DIR,
        prepare="export.synthetic:register_random_model",
    ),
}
DEFAULT_WORKLOADS = ("fashion-mnist", "mobilenetv2")


def parse_workload(spec: str, models_dir: Path | None = None) -> Workload:
    """``NAME`` (a preset) or ``NAME=MODELS_DIR:MODEL[:CORPUS]`` (a preset's name keeps its description)."""
    name, _, rest = spec.partition("=")
    name = name.strip()
    if not rest:
        if name not in PRESETS:
            raise ValueError(
                f"unknown workload {name!r}: use one of {', '.join(PRESETS)} or NAME=MODELS_DIR:MODEL[:CORPUS]"
            )
        return replace(PRESETS[name], models_dir=models_dir) if models_dir else PRESETS[name]
    parts = rest.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"workload {spec!r}: expected NAME=MODELS_DIR:MODEL[:CORPUS]")
    base = PRESETS.get(name, Workload(name, model=parts[1], corpus="png-28-gray"))
    corpus = parts[2] if len(parts) == 3 else base.corpus
    if corpus not in KINDS:
        raise ValueError(f"workload {spec!r}: unknown corpus {corpus!r}; choose one of {', '.join(KINDS)}")
    return replace(base, models_dir=Path(parts[0]), model=parts[1], corpus=corpus)


@dataclass(frozen=True)
class ResolvedWorkload:
    """A workload whose model exists: the exact version and files every target will serve."""

    workload: Workload
    root: Path
    version: int
    card: ModelCard
    files: dict[str, Path]  # variant -> ONNX file
    keras_file: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.workload.name

    def describe(self) -> dict[str, object]:
        pre = self.card.preprocessing
        return {
            "models_dir": str(self.root),
            "model": self.card.name,
            "version": self.version,
            "architecture": self.card.architecture,
            "input": list(pre.shape),
            "variants": sorted(self.files),
            "keras": self.keras_file is not None,
            "bound": self.workload.bound,
            "description": self.workload.description,
        }


def prepare(workload: Workload) -> bool:
    """Run the workload's prepare hook if its model is missing; True if it ran. ``Unavailable`` on failure."""
    root = workload.registry_root()
    registry = Registry(root)
    if workload.model in registry.list_models():
        return False
    if not workload.prepare:
        raise Unavailable(f"model {workload.model!r} is not in {root} and workload {workload.name} has no prepare hook")
    module, _, func = workload.prepare.partition(":")
    try:
        getattr(importlib.import_module(module), func)(registry, workload.model)
    except Exception as exc:  # the hook is someone else's code: report, do not crash the suite
        raise Unavailable(f"prepare hook {workload.prepare} failed: {type(exc).__name__}: {exc}") from exc
    return True


def resolve(workload: Workload) -> ResolvedWorkload:
    """The model's production version and files; ``Unavailable`` (saying how to get it) if it is absent."""
    root = workload.registry_root()
    registry = Registry(root)
    if workload.model not in registry.list_models():
        how = (f"run `python -m benchmarks prepare {workload.name}` (hook {workload.prepare}), "
               if workload.prepare else "register it, ")
        raise Unavailable(
            f"model {workload.model!r} is not in the registry {root} "
            f"({how}or pass {workload.name}=MODELS_DIR:MODEL:{workload.corpus})"
        )
    try:
        version = registry.resolve(workload.model, workload.version)
        card = registry.card(workload.model, version)
    except ImgServeError as exc:
        raise Unavailable(exc.message) from exc
    files = {}
    for variant in ("int8", "fp32"):
        path = registry.model_file(workload.model, version, variant)
        if path.is_file():
            files[variant] = path
    if not files:
        raise Unavailable(f"{workload.model} v{version} has no ONNX file")
    keras = registry.version_dir(workload.model, version) / KERAS_FILE
    return ResolvedWorkload(workload, root, version, card, files, keras if keras.is_file() else None)
