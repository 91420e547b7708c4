"""Synthetic images and softmax rows, and a reference built from them: shared by test_reference.py and
test_drift.py."""

from __future__ import annotations

import numpy as np

from inference.reference import Reference, build_reference

LABELS = tuple(f"c{i}" for i in range(5))


def sample(n: int, rng: np.random.Generator, *, light: float = 80.0, confident: float = 4.0, skew: bool = False):
    """``n`` images (noise around a brightness) and softmax rows of a classifier (logit scale ``confident``)."""
    pixels = np.clip(rng.normal(light, 30.0, size=(n, 8, 8, 1)), 0, 255).astype(np.uint8)
    logits = rng.normal(0, 1, size=(n, len(LABELS)))
    cls = rng.integers(0, 2, size=n) if skew else rng.integers(0, len(LABELS), size=n)
    logits[np.arange(n), cls] += confident
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return pixels, probs.astype(np.float32)


def baseline_reference() -> Reference:
    """The reference of 2,000 unshifted samples (seed 0) that the live figures are compared with."""
    pixels, probs = sample(2000, np.random.default_rng(0))
    return build_reference(probs, pixels, LABELS, source="test", variant="int8")
