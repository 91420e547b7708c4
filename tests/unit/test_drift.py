"""inference/reference.py + serving/drift.py: references round-trip, PSI stays low on the reference's own
distribution and rises under a shift, the live windows roll, and a missing reference is not tracked."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from inference.reference import SIGNALS, Histogram, Reference, brightness, build_reference, png_sizes, psi
from serving.drift import DriftConfig, DriftMonitor

LABELS = tuple(f"c{i}" for i in range(5))


def sample(n: int, rng: np.random.Generator, *, light: float = 80.0, confident: float = 4.0, skew: bool = False):
    """``n`` images (noise around a brightness) and softmax rows of a classifier (logit scale ``confident``)."""
    pixels = np.clip(rng.normal(light, 30.0, size=(n, 8, 8, 1)), 0, 255).astype(np.uint8)
    logits = rng.normal(0, 1, size=(n, len(LABELS)))
    cls = rng.integers(0, 2, size=n) if skew else rng.integers(0, len(LABELS), size=n)
    logits[np.arange(n), cls] += confident
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return pixels, probs.astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> Reference:
    pixels, probs = sample(2000, np.random.default_rng(0))
    return build_reference(probs, pixels, LABELS, source="test", variant="int8")


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


def test_monitor_reports_after_min_samples_and_moves_under_shift(reference: Reference) -> None:
    seen: dict[tuple[str, int, str], float] = {}
    monitor = DriftMonitor(lambda m, v: reference, config=DriftConfig(window=400, min_samples=200, every=50),
                           on_psi=lambda m, v, s, x: seen.__setitem__((m, v, s), x))
    rng = np.random.default_rng(2)
    for _ in range(3):  # 150 images: below min_samples, nothing reported yet
        pixels, probs = sample(50, rng)
        monitor.observe("m", 1, probs, pixels, [300] * 50)
    assert seen == {}
    for _ in range(5):
        pixels, probs = sample(50, rng)
        monitor.observe("m", 1, probs, pixels, [300] * 50)
    calm = {s: seen[("m", 1, s)] for s in ("predicted_class", "confidence", "brightness")}
    assert all(v < 0.1 for v in calm.values()), calm
    for _ in range(8):  # 400 shifted images replace the whole window
        pixels, probs = sample(50, rng, light=200.0, confident=2.0, skew=True)
        monitor.observe("m", 1, probs, pixels, [90_000] * 50)
    moved = {s: seen[("m", 1, s)] for s in SIGNALS}
    assert all(v > 0.25 for v in moved.values()), moved
    snap = monitor.snapshot()["m:1"]
    assert snap["images"] == 800 and snap["window"]["brightness"] == 400
    monitor.forget("m", 1)
    assert all(math.isnan(seen[("m", 1, s)]) for s in SIGNALS)


def test_versions_without_a_reference_are_not_tracked(reference: Reference) -> None:
    loads: list[tuple[str, int]] = []

    def load(model: str, version: int) -> Reference | None:
        loads.append((model, version))
        if version == 3:
            raise ValueError("corrupt reference.json")
        return reference if version == 1 else None

    monitor = DriftMonitor(load, config=DriftConfig(window=10, min_samples=1, every=1))
    pixels, probs = sample(5, np.random.default_rng(3))
    for version in (1, 2, 3, 2, 3):
        monitor.observe("m", version, probs, pixels)
    assert loads == [("m", 1), ("m", 2), ("m", 3)]  # looked up once per version, failures included
    assert list(monitor.snapshot()) == ["m:1"]
    assert "size" not in monitor.snapshot()["m:1"]["psi"]  # tensor inputs: no encoded size, no size signal
