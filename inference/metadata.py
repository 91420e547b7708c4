"""Typed model metadata, serialised to ``metadata.json`` beside each registered version.

Serving reads the preprocessing spec from here, so training and serving cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RegistryError
from .labels import derive_label_folders

SCHEMA_VERSION = 1
LAYOUTS = ("NHWC", "NCHW")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input: resize to (height, width), ``channels`` colour planes,
    then ``(pixel * scale - mean) / std`` per channel, float32 laid out as ``layout`` (NHWC: Keras/TF;
    NCHW: PyTorch/torchvision exports)."""

    height: int
    width: int
    channels: int  # 1 (grayscale) or 3 (RGB)
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: str = "bilinear"
    layout: str = "NHWC"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"height and width must be positive, got {self.height}x{self.width}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if len(value) not in (1, self.channels):
                raise ValueError(f"{name} needs 1 or {self.channels} values, got {len(value)}")
        if any(s == 0 for s in self.std):
            raise ValueError("std values must be non-zero")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Pixels as images arrive and as clients send them: (H, W, C), whatever the model's layout."""
        return (self.height, self.width, self.channels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One row of the ONNX graph's input in its own layout: (H, W, C) or (C, H, W)."""
        return self.shape if self.layout == "NHWC" else (self.channels, self.height, self.width)

    @property
    def pil_mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]  # -1 for a dynamic dimension


@dataclass(frozen=True)
class ModelCard:
    """Everything known about one registered version. Immutable once written."""

    name: str
    version: int
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    created_at: str = ""
    architecture: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    parent_version: int | None = None
    command: str = ""
    schema_version: int = SCHEMA_VERSION
    # One class-folder name per label (inference.labels); derived when absent, so versions written before
    # the field existed read the same way without being rewritten.
    label_folders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.label_folders:
            object.__setattr__(self, "label_folders", derive_label_folders(self.labels))
        elif len(self.label_folders) != len(self.labels):
            raise ValueError(f"label_folders has {len(self.label_folders)} names for {len(self.labels)} labels")
        elif len({f.lower() for f in self.label_folders}) != len(self.label_folders):
            raise ValueError("label_folders must be distinct")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def variants(self) -> tuple[str, ...]:
        """The model files this version has: fp32 always; int8 unless it was imported without calibration
        images (``export.variants``, written by ``imgserve import``)."""
        return tuple(self.export.get("variants", ("fp32", "int8")))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ModelCard:
        if "labels" in changes and "label_folders" not in changes:
            changes["label_folders"] = ()  # derived again from the new labels
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        try:
            pre = data["preprocessing"]
            return cls(
                name=str(data["name"]),
                version=int(data["version"]),
                labels=tuple(str(x) for x in data["labels"]),
                preprocessing=Preprocessing(
                    **{**pre, "mean": tuple(pre.get("mean", (0.0,))), "std": tuple(pre.get("std", (1.0,)))}
                ),
                inputs=tuple(_tensor(t) for t in data["inputs"]),
                outputs=tuple(_tensor(t) for t in data["outputs"]),
                created_at=data.get("created_at", ""),
                architecture=data.get("architecture", ""),
                training=dict(data.get("training", {})),
                dataset=dict(data.get("dataset", {})),
                metrics=dict(data.get("metrics", {})),
                export=dict(data.get("export", {})),
                parent_version=data.get("parent_version"),
                command=data.get("command", ""),
                schema_version=int(data.get("schema_version", SCHEMA_VERSION)),
                label_folders=tuple(str(x) for x in data.get("label_folders") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"invalid model metadata: {exc}") from exc

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"cannot read model metadata {Path(path).name}: {exc}") from exc
        return cls.from_dict(data)


def _tensor(data: dict[str, Any]) -> TensorSpec:
    return TensorSpec(name=str(data["name"]), dtype=str(data["dtype"]), shape=tuple(int(d) for d in data["shape"]))
