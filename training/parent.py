"""What a training run inherits from an existing model: a warm start's weights, labels, label folder names
and preprocessing (``init_from``), or only the labels and their folder names (``labels_from``), so that a
folder set's classes line up with that model's outputs and the two can be compared."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.errors import ConfigError
from inference.labels import derive_label_folders
from inference.metadata import Preprocessing
from inference.registry import KERAS_FILE, METADATA_FILE

from .datasets import ClassOrder


@dataclass(frozen=True)
class Parent:
    """What a warm start inherits: labels and preprocessing from files beside the model.keras."""

    path: Path
    labels: tuple[str, ...] | None
    preprocessing: Preprocessing | None
    ref: dict[str, Any]
    architecture: str | None = None
    label_folders: tuple[str, ...] | None = None
    tta_flip: bool = False  # its predictions average each image with its mirror image

    @property
    def order(self) -> ClassOrder | None:
        if self.labels is None:
            return None
        return ClassOrder(self.labels, self.label_folders or derive_label_folders(self.labels))


def load_parent(init_from: str | None) -> Parent | None:
    if init_from is None:
        return None
    path = Path(init_from)
    if path.is_dir():
        path = path / KERAS_FILE
    if not path.is_file():
        raise ConfigError(f"--init-from {init_from}: no model.keras there")
    meta, labels_file, pre_file = (
        path.parent / n for n in (METADATA_FILE, "labels.json", "preprocessing.json")
    )
    if meta.is_file():  # a registry version
        data = json.loads(meta.read_text())
        return Parent(
            path,
            tuple(data["labels"]),
            Preprocessing(**tuples(data["preprocessing"])),
            {"name": data.get("name"), "version": data.get("version"), "path": str(path)},
            data.get("architecture") or None,
            tuple(data.get("label_folders") or ()) or None,
            bool((data.get("export") or {}).get("tta_flip")),
        )
    if labels_file.is_file() and pre_file.is_file():  # a run directory
        config_file = path.parent / "config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        return Parent(
            path,
            tuple(json.loads(labels_file.read_text())),
            Preprocessing(**tuples(json.loads(pre_file.read_text()))),
            {"path": str(path)},
            config.get("arch"),
            tta_flip=run_tta_flip(config),
        )
    return Parent(path, None, None, {"path": str(path)})


def run_tta_flip(run_config: dict[str, Any]) -> bool:
    """Whether a run (its config.json, as ``training.train`` resolved it) answers with flip averaging:
    ``--tta-flip``, or inherited from its own warm-start parent."""
    return bool((run_config.get("resolved") or {}).get("tta_flip"))


def labels_reference(labels_from: str | None) -> Parent | None:
    """The labels (and folder names) of ``labels_from``, a version dir or its metadata.json."""
    if labels_from is None:
        return None
    path = Path(labels_from)
    meta = path / METADATA_FILE if path.is_dir() else path
    try:
        data = json.loads(meta.read_text())
        labels = tuple(str(x) for x in data["labels"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--labels-from {labels_from}: cannot read its labels ({exc})") from None
    return Parent(meta, labels, None, {"labels_from": str(meta)}, None, tuple(data.get("label_folders") or ()) or None)


def tuples(pre: dict[str, Any]) -> dict[str, Any]:
    return {**pre, "mean": tuple(pre.get("mean", (0.0,))), "std": tuple(pre.get("std", (1.0,)))}


