"""Drift references (``reference.json``): written by every export from its held-out test images, and for a version
registered before exports wrote them (the shipped default model) by ``imgserve predictions reference``.

The reference is what the *served* variant (INT8 by default) predicted on images no training step saw: the
same split the accuracy gate measured, re-created from the version's recorded data set and split seed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from inference.errors import ConfigError
from inference.metadata import ModelCard
from inference.reference import REFERENCE_FILE, Reference, build_reference
from inference.registry import Registry
from inference.session import OnnxClassifier

log = logging.getLogger(__name__)
BATCH = 256


def predict_in_batches(model: OnnxClassifier, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([model.predict_pixels(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)])


def heldout_pixels(card: ModelCard, data: str | None = None) -> tuple[np.ndarray, str]:
    """The version's test split (uint8 NHWC at its input size) and a description of it. ``data`` overrides the
    recorded data set (needed for a folder data set whose path the metadata does not keep)."""
    from training.datasets import DATASET_NAMES, load_dataset  # TF-free, but not part of the serving image

    recorded = card.dataset.get("name")
    source = data or (recorded if recorded in DATASET_NAMES else None)
    if source is None:
        raise ConfigError(
            f"{card.name} v{card.version} was trained on {recorded or 'an unrecorded data set'}; "
            "pass --data with the folder or zip of class folders it came from"
        )
    config = (card.training or {}).get("config") or {}
    ds = load_dataset(
        source, card.preprocessing,
        val_fraction=float(config.get("val_fraction", 0.1)), test_fraction=float(config.get("test_fraction", 0.15)),
        seed=int(card.dataset.get("split_seed", config.get("seed", 0)) or 0),
    )
    if tuple(ds.labels) != tuple(card.labels):
        raise ConfigError(f"data set {source!r} has labels {list(ds.labels)}, the model {list(card.labels)}")
    return ds.test.x, f"{source} {ds.test_source} test split ({len(ds.test)} images)"


def write_reference(registry: Registry, name: str, version: int | str = "production", *, variant: str = "int8",
                    data: str | None = None, limit: int | None = None) -> Path:
    """Compute and write ``reference.json`` for an existing version (atomically; the version's model files and
    metadata are untouched). Returns its path."""
    number = registry.resolve(name, version)
    card = registry.card(name, number)
    pixels, source = heldout_pixels(card, data)
    if limit:
        pixels = pixels[:limit]
        source += f", first {len(pixels)}"
    model = OnnxClassifier.load(registry.model_file(name, number, variant), card, variant)
    reference = build_reference(predict_in_batches(model, pixels), pixels, card.labels, source=source, variant=variant)
    path = reference.save(registry.version_dir(name, number) / REFERENCE_FILE)
    log.info("wrote %s (%d images, %s)", path, reference.images, source)
    return path


def reference_of(probabilities: np.ndarray, pixels: np.ndarray, labels: tuple[str, ...], out: Path, *,
                 source: str, variant: str = "int8") -> Reference:
    """The export pipeline's step: the reference of the staged version, written into its directory."""
    reference = build_reference(probabilities, pixels, labels, source=source, variant=variant)
    reference.save(out / REFERENCE_FILE)
    return reference
