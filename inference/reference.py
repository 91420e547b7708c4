"""A version's reference distributions (``reference.json`` next to ``metadata.json``) and the population stability
index (PSI) that compares live traffic with them: drift signals that need no labels.

Signals, each a histogram over fixed bins:
  * ``predicted_class`` - share of each top-1 label;
  * ``confidence`` - top-1 probability, in bins dense near 1 (where a good classifier's mass is);
  * ``brightness`` - mean pixel value (0-255) of the image as the model sees it (resized, before normalisation),
    in bins at the reference's deciles, so each holds a tenth of the reference;
  * ``size`` - encoded image size in bytes, in powers of 4. The reference encodes its held-out images as PNG (how
    the examples and most test clients send them), so a switch to big JPEG photos shows up here.

PSI = sum over bins of (live - ref) * ln(live / ref), with empty bins counted as ``EPSILON``. The usual reading:
< 0.1 no shift, 0.1-0.25 moderate, > 0.25 significant (the alert threshold in deploy/prometheus/).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_json
from .registry import utc_now

REFERENCE_FILE = "reference.json"
FORMAT = 1
EPSILON = 1e-4
SIGNALS = ("predicted_class", "confidence", "brightness", "size")
PSI_SIGNIFICANT = 0.25  # the usual "significant shift"; deploy/prometheus/ alerts on it, the dashboard marks it
CONFIDENCE_EDGES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
SIZE_EDGES = tuple(float(4**k) for k in range(4, 13))  # 256 B ... 16 MiB


@dataclass(frozen=True)
class Histogram:
    """Inner bin edges (bin i holds ``edges[i-1] <= x < edges[i]``; the outer bins are open) or, for a
    categorical signal, no edges and one bin per class index. ``fractions`` sum to 1."""

    fractions: tuple[float, ...]
    edges: tuple[float, ...] | None = None

    @property
    def bins(self) -> int:
        return len(self.fractions)

    def bin_of(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each value (class indices pass through)."""
        if self.edges is None:
            return np.asarray(values, dtype=np.int64)
        return np.searchsorted(np.asarray(self.edges), values, side="right")

    @classmethod
    def of(cls, values: np.ndarray, *, edges: tuple[float, ...] | None = None, bins: int | None = None) -> Histogram:
        """The histogram of ``values`` over ``edges`` (or over ``bins`` class indices)."""
        n = bins if edges is None else len(edges) + 1
        probe = cls((0.0,) * n, edges)
        counts = np.bincount(probe.bin_of(values), minlength=n)[:n]
        return cls(tuple(float(c) for c in counts / max(1, counts.sum())), edges)

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges) if self.edges is not None else None, "fractions": list(self.fractions)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        edges = data.get("edges")
        return cls(tuple(float(f) for f in data["fractions"]), tuple(float(e) for e in edges) if edges else None)


def psi(reference: tuple[float, ...] | np.ndarray, counts: np.ndarray) -> float:
    """Population stability index of live ``counts`` (per bin) against reference fractions."""
    expected = np.clip(np.asarray(reference, dtype=np.float64), EPSILON, None)
    total = float(np.sum(counts))
    if total <= 0:
        return 0.0
    actual = np.clip(np.asarray(counts, dtype=np.float64) / total, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def brightness(pixels: np.ndarray) -> np.ndarray:
    """Mean pixel value per image of uint8 NHWC pixels: one number per row."""
    return pixels.reshape(len(pixels), -1).mean(axis=1)


def png_sizes(pixels: np.ndarray) -> np.ndarray:
    """Bytes of each uint8 NHWC image encoded as PNG: the reference for the ``size`` signal."""
    from PIL import Image

    sizes = []
    for row in pixels:
        buf = io.BytesIO()
        Image.fromarray(row[..., 0] if row.shape[-1] == 1 else row).save(buf, format="PNG")
        sizes.append(buf.tell())
    return np.asarray(sizes, dtype=np.float64)


@dataclass(frozen=True)
class Reference:
    """What held-out data looked like to one version: the baseline of every drift signal."""

    labels: tuple[str, ...]
    signals: dict[str, Histogram]
    images: int
    source: str
    variant: str
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "labels": list(self.labels), "images": self.images, "source": self.source,
            "variant": self.variant, "created_at": self.created_at,
            "signals": {name: h.to_dict() for name, h in self.signals.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        return cls(
            labels=tuple(data["labels"]),
            signals={name: Histogram.from_dict(h) for name, h in data["signals"].items()},
            images=int(data["images"]), source=str(data.get("source", "")), variant=str(data.get("variant", "")),
            created_at=str(data.get("created_at", "")),
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> Reference:
        return cls.from_dict(json.loads(Path(path).read_text()))


def build_reference(
    probabilities: np.ndarray, pixels: np.ndarray, labels: tuple[str, ...], *, source: str, variant: str,
    sizes: np.ndarray | None = None,
) -> Reference:
    """The reference of held-out ``pixels`` (uint8 NHWC at the model's size) and the served variant's
    ``probabilities`` on them. ``sizes`` default to the images' PNG sizes."""
    if len(probabilities) != len(pixels) or len(pixels) == 0:
        raise ValueError(f"need as many probability rows as images (got {len(probabilities)} and {len(pixels)})")
    light = brightness(pixels)
    deciles = np.unique(np.quantile(light, np.linspace(0.1, 0.9, 9)))
    signals = {
        "predicted_class": Histogram.of(probabilities.argmax(axis=1), bins=len(labels)),
        "confidence": Histogram.of(probabilities.max(axis=1), edges=CONFIDENCE_EDGES),
        "brightness": Histogram.of(light, edges=tuple(float(e) for e in deciles)),
        "size": Histogram.of(png_sizes(pixels) if sizes is None else sizes, edges=SIZE_EDGES),
    }
    return Reference(tuple(labels), signals, len(pixels), source, variant, utc_now())
