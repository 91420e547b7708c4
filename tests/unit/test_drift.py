"""serving/drift.py: the live windows report after enough samples, roll and move under a shift, and a version
without a reference is not tracked. The references themselves: test_reference.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.reference import SIGNALS, Reference
from serving.drift import DriftConfig, DriftMonitor
from tests.unit.drift_samples import baseline_reference, sample


@pytest.fixture(scope="module")
def reference() -> Reference:
    return baseline_reference()


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
