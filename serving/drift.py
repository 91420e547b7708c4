"""Label-free drift signals of the live traffic: PSI of each signal of :mod:`inference.reference` over a rolling
window of the last predictions, per served version, exported as the gauge ``imgserve_drift_psi``.

Per worker: each keeps its own window of the predictions it served (the last ``window`` images, default 1,000)
and reports once it holds ``min_samples`` of them; the gauge combines workers by their maximum (``livemax``).
Bookkeeping per image is a few list writes; the PSI (a sum over ~10 bins per signal) is recomputed
every ``every`` images, not per request. A version without ``reference.json`` is simply not tracked
(``imgserve predictions reference`` writes one for an existing version).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.reference import SIGNALS, Reference, psi

log = logging.getLogger(__name__)

PsiObserver = Callable[[str, int, str, float], None]  # (model, version, signal, psi)
ReferenceLoader = Callable[[str, int], "Reference | None"]


@dataclass(frozen=True)
class DriftConfig:
    window: int = 1000
    min_samples: int = 200
    every: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.min_samples <= self.window or self.every < 1:
            raise ValueError("drift: need 1 <= min_samples <= window and every >= 1")


class _Window:
    """The last ``size`` bin indices of one signal, with their per-bin counts kept up to date. Plain lists:
    one image at a time, numpy's per-call overhead (~5 us a call) would cost more than the work."""

    def __init__(self, size: int, bins: int):
        self.ring = [-1] * size
        self.counts = [0] * bins
        self.pos = 0

    def add(self, b: int) -> None:
        b = min(max(b, 0), len(self.counts) - 1)
        old = self.ring[self.pos]
        if old >= 0:
            self.counts[old] -= 1
        self.ring[self.pos] = b
        self.counts[b] += 1
        self.pos = (self.pos + 1) % len(self.ring)

    @property
    def filled(self) -> int:
        return sum(self.counts)


class _Tracked:
    def __init__(self, reference: Reference, config: DriftConfig):
        self.reference = reference
        self.windows = {s: _Window(config.window, reference.signals[s].bins) for s in SIGNALS if s in reference.signals}
        self.edges = {s: reference.signals[s].edges for s in self.windows}
        self.seen = 0
        self.since_report = 0
        self.last: dict[str, float] = {}


class DriftMonitor:
    """``observe`` after each classification; ``snapshot`` for a status page."""

    def __init__(self, load_reference: ReferenceLoader, *, config: DriftConfig | None = None,
                 on_psi: PsiObserver | None = None):
        self.config = config or DriftConfig()
        self._load = load_reference
        self._on_psi = on_psi
        self._tracked: dict[tuple[str, int], _Tracked | None] = {}

    def _get(self, model: str, version: int) -> _Tracked | None:
        key = (model, version)
        if key not in self._tracked:  # once per version (a small JSON file; a missing one is remembered too)
            try:
                reference = self._load(model, version)
            except Exception as exc:  # a broken reference must never fail a request
                log.warning("drift: no usable reference for %s v%d: %s", model, version, exc)
                reference = None
            self._tracked[key] = _Tracked(reference, self.config) if reference is not None else None
            if reference is None:
                log.info("drift: %s v%d has no reference.json; its drift is not tracked", model, version)
        return self._tracked[key]

    def observe(self, model: str, version: int, probabilities: np.ndarray, pixels: np.ndarray | None = None,
                sizes: list[int] | None = None) -> None:
        """One classification: ``probabilities`` [N, C]; uint8 NHWC ``pixels`` and encoded ``sizes`` in bytes
        when the request had them (an OIP tensor input has no encoded size)."""
        tracked = self._get(model, version)
        if tracked is None:
            return
        windows, edges = tracked.windows, tracked.edges
        for i, row in enumerate(probabilities):  # per row in Python: numpy's per-call cost dominates at N=1
            k = int(row.argmax())
            if "predicted_class" in windows:
                windows["predicted_class"].add(k)
            if "confidence" in windows:
                windows["confidence"].add(bisect.bisect_right(edges["confidence"], float(row[k])))
            if pixels is not None and "brightness" in windows:
                light = float(np.add.reduce(pixels[i].ravel(), dtype=np.uint64)) / pixels[i].size
                windows["brightness"].add(bisect.bisect_right(edges["brightness"], light))
            if sizes is not None and "size" in windows:
                windows["size"].add(bisect.bisect_right(edges["size"], sizes[i]))
        tracked.seen += len(probabilities)
        tracked.since_report += len(probabilities)
        if tracked.since_report >= self.config.every:
            tracked.since_report = 0
            self._report(model, version, tracked)

    def _report(self, model: str, version: int, tracked: _Tracked) -> None:
        for name, window in tracked.windows.items():
            if window.filled < self.config.min_samples:
                continue
            value = psi(tracked.reference.signals[name].fractions, np.asarray(window.counts))
            tracked.last[name] = value
            if self._on_psi is not None:
                self._on_psi(model, version, name, value)

    def forget(self, model: str, version: int) -> None:
        """A version stopped being served: drop its window; its gauges read NaN (no longer a current value)."""
        tracked = self._tracked.pop((model, version), None)
        if tracked is not None and self._on_psi is not None:
            for name in tracked.last:
                self._on_psi(model, version, name, float("nan"))

    def snapshot(self) -> dict[str, Any]:
        """Per tracked version: images seen, window fill and the last PSI of each signal."""
        return {
            f"{model}:{version}": {
                "images": t.seen,
                "window": {n: w.filled for n, w in t.windows.items()},
                "psi": {n: round(v, 4) for n, v in t.last.items()},
            }
            for (model, version), t in self._tracked.items() if t is not None
        }
