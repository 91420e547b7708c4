"""inference/reference.py: references round-trip, PSI stays low on the reference's own distribution and rises
under a shift, histogram bins and encoded sizes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from inference.reference import SIGNALS, Histogram, Reference, brightness, png_sizes, psi
from tests.unit.drift_samples import baseline_reference, sample


@pytest.fixture(scope="module")
def reference() -> Reference:
    return baseline_reference()


def test_reference_round_trip(tmp_path: Path, reference: Reference) -> None:
    assert set(reference.signals) == set(SIGNALS)
    for h in reference.signals.values():
        assert math.isclose(sum(h.fractions), 1.0, abs_tol=1e-9)
    brightness_bins = reference.signals["brightness"]
    assert brightness_bins.bins == 10 and all(0.07 < f < 0.13 for f in brightness_bins.fractions)  # deciles
    path = reference.save(tmp_path / "reference.json")
    assert Reference.load(path) == reference


def test_psi_is_small_on_the_same_distribution_and_large_under_a_shift(reference: Reference) -> None:
    rng = np.random.default_rng(1)
    same_pixels, same_probs = sample(1000, rng)
    dark_pixels, unsure_probs = sample(1000, rng, light=30.0, confident=0.5, skew=True)
    h = reference.signals
    same = {
        "brightness": psi(h["brightness"].fractions, np.bincount(h["brightness"].bin_of(brightness(same_pixels)), minlength=10)),
        "confidence": psi(h["confidence"].fractions, np.bincount(h["confidence"].bin_of(same_probs.max(1)), minlength=10)),
    }
    shifted = {
        "brightness": psi(h["brightness"].fractions, np.bincount(h["brightness"].bin_of(brightness(dark_pixels)), minlength=10)),
        "confidence": psi(h["confidence"].fractions, np.bincount(h["confidence"].bin_of(unsure_probs.max(1)), minlength=10)),
    }
    assert all(v < 0.05 for v in same.values()), same
    assert all(v > 0.5 for v in shifted.values()), shifted
    assert psi((0.5, 0.5), np.array([0, 0])) == 0.0  # nothing seen yet: no signal, not a crash


def test_histogram_bins_and_png_sizes() -> None:
    h = Histogram.of(np.array([0.1, 0.5, 0.95, 0.999, 1.0]), edges=(0.5, 0.99))
    assert h.fractions == pytest.approx((0.2, 0.4, 0.4))
    pixels = np.zeros((2, 28, 28, 1), dtype=np.uint8)
    pixels[1] = np.random.default_rng(0).integers(0, 255, size=(28, 28, 1))
    small, noisy = png_sizes(pixels)
    assert 50 < small < noisy < 2000
