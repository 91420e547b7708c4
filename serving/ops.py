"""A worker's live-operations features, built from settings in one place: the per-client rate limiter
(serving/ratelimit.py), the sampled prediction log (serving/predlog.py) and the drift monitor (serving/drift.py).

The runtime calls :meth:`LiveOps.observe` after each classification (``on_classified``); everything it does is
optional and never fails a request: an error in the log or the drift bookkeeping is logged and the answer goes
out as computed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.reference import REFERENCE_FILE, Reference

from .drift import DriftConfig, DriftMonitor
from .predlog import PredictionLog, PredictionLogConfig
from .predlog_sink import ObjectSink, log_url
from .ratelimit import RateLimit, RateLimiter

if TYPE_CHECKING:
    from .metrics import ServingMetrics
    from .settings import ServeSettings

log = logging.getLogger(__name__)


def _sink(settings: ServeSettings) -> ObjectSink | None:
    url = log_url(settings.models_dir, settings.prediction_log_url)
    return ObjectSink(url, settings.cache_dir) if url else None


class LiveOps:
    def __init__(self, settings: ServeSettings, metrics: ServingMetrics | None = None):
        self._metrics = metrics
        self.limiter = (
            RateLimiter(RateLimit.parse(settings.rate_limit, settings.rate_limit_burst), by_token=not settings.api_token)
            if settings.rate_limit else None
        )
        self.predlog = (
            PredictionLog(PredictionLogConfig(
                Path(settings.data_dir) / "predictions", sample=settings.prediction_log_sample,
                images=settings.prediction_log_images, max_bytes=settings.prediction_log_max_mb * 1024 * 1024,
                rotate_s=settings.prediction_log_rotate_s, sink=_sink(settings),
            ))
            if settings.prediction_log_sample > 0 else None
        )
        self._dirs: dict[tuple[str, int], Path] = {}
        self.drift = (
            DriftMonitor(
                self._reference,
                config=DriftConfig(window=settings.drift_window, min_samples=min(settings.drift_min_samples,
                                                                                 settings.drift_window)),
                on_psi=metrics.observe_drift if metrics is not None else None,
            )
            if settings.drift else None
        )
        if self.limiter:
            log.info("rate limit per client and worker: %s", self.limiter.limit)
        if self.predlog:
            sink = self.predlog.config.sink
            log.info("prediction log: %.1f %% of requests to %s%s", 100 * settings.prediction_log_sample,
                     self.predlog.root, f" (finished files to {sink.url})" if isinstance(sink, ObjectSink) else "")

    def _reference(self, model: str, version: int) -> Reference | None:
        folder = self._dirs.get((model, version))
        path = folder / REFERENCE_FILE if folder is not None else None
        return Reference.load(path) if path is not None and path.is_file() else None

    def observe(self, model: Any, probabilities: np.ndarray, pixels: np.ndarray | None,
                images: list[bytes] | None, started: float) -> None:
        """The runtime's ``on_classified`` hook: ``model`` is the :class:`OnnxClassifier` that answered."""
        try:
            card = model.card
            if self.drift is not None:
                if (card.name, card.version) not in self._dirs:
                    self._dirs[(card.name, card.version)] = Path(model.path).parent
                sizes = [len(b) for b in images] if images is not None else None
                self.drift.observe(card.name, card.version, probabilities, pixels, sizes)
            if self.predlog is not None:
                self.predlog.maybe_log(card.name, card.version, model.variant, card.labels, probabilities,
                                       time.perf_counter() - started, images)
        except Exception:
            log.exception("live ops: observing a prediction failed (the answer was sent)")

    def on_swap(self, old_label: str | None, new_label: str, seconds: float, provider: str = "") -> None:
        """A model slot's ``on_swap`` hook: the metrics' own, then the replaced version's drift window goes."""
        if self._metrics is not None:
            self._metrics.observe_swap(old_label, new_label, seconds, provider)
        if old_label and old_label != new_label and self.drift is not None:
            name, version, _ = old_label.split(":", 2)
            self.drift.forget(name, int(version))

    def not_ready(self) -> None:
        """The worker started draining: ``imgserve_ready`` goes to 0 with ``/readyz``."""
        if self._metrics is not None:
            self._metrics.ready.set(0)

    def close(self) -> None:
        if self.predlog is not None:
            self.predlog.close()
