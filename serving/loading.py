"""Loading a registered version into a session, and remembering the versions that failed to load.

Versions are immutable, so a version that failed to load (a truncated or corrupt ONNX file, a graph that does
not match its metadata) will fail again: :class:`VersionLoader` remembers each failure, logs it once per version
(one line, no traceback: the reason is in it), and the alias watch does not retry it for ``RETRY_FAILED_S``
(a transient cause, e.g. an object-store hiccup while fetching, heals by itself after that). ``POST /reload``
always retries. Before this, a corrupt production version logged a traceback every 2 s per worker, and a
worker that restarted came up with nothing to serve.

What to serve instead when the alias target does not load: serving/fallback.py.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from inference.errors import ImgServeError, VersionNotLoadable
from inference.reference import REFERENCE_FILE
from inference.registry import Registry
from inference.session import OnnxClassifier, SessionOptions

log = logging.getLogger(__name__)

RETRY_FAILED_S = 60.0  # the alias watch retries a version that failed to load after this long


class VersionLoader:
    """Loads and warms versions of one model (in a worker thread); remembers the ones that failed."""

    def __init__(self, name: str, registry: Registry, session: SessionOptions, *, batch_limit: int,
                 auto_batch: bool, on_failure: object = None):
        self.name, self.registry, self.session = name, registry, session
        self.batch_limit, self.auto_batch = batch_limit, auto_batch
        self._on_failure = on_failure  # callable(model name), once per version that fails
        self.failed: dict[tuple[int, str], tuple[str, float]] = {}  # (version, variant) -> (message, when)

    def load(self, version: int, variant: str, *, retry: bool = True) -> OnnxClassifier:
        """The loaded, warmed model, or VersionNotLoadable naming the version and the reason."""
        key = (version, variant)
        known = self.failed.get(key)
        if known is not None and not retry and time.monotonic() - known[1] < RETRY_FAILED_S:
            raise VersionNotLoadable(known[0])
        path: Path | None = None
        try:
            card = self.registry.card(self.name, version)
            path = self.registry.model_file(self.name, version, variant)
            self._fetch_reference(version)
            model = OnnxClassifier.load(path, card, variant, self.session)
            model.warmup()
            if self.auto_batch and self.batch_limit > 1:
                model.max_batch = model.efficient_batch(self.batch_limit)
                log.info("%s: batches of up to %d rows (fastest per row here)", model.label, model.max_batch)
        except Exception as exc:
            message = f"model {self.name!r} v{version} ({variant}) cannot be loaded: {_reason(exc, path)}"
            if known is None:
                log.error("%s", message)
                if callable(self._on_failure):
                    self._on_failure(self.name)
            self.failed[key] = (message, time.monotonic())
            raise VersionNotLoadable(message) from None
        if self.failed.pop(key, None) is not None:
            log.info("%s loads now", model.label)
        return model


    def _fetch_reference(self, version: int) -> None:
        """Put the version's drift reference beside its model file, where serving/ops.py looks for it: on an
        s3:// registry that is a (verified) download into the local cache, here in the loading thread rather
        than on the first request. Never fails the load: without it, drift is just not tracked."""
        try:
            self.registry.fetch(self.name, version, REFERENCE_FILE)
        except Exception as exc:  # noqa: BLE001 - an optional file
            log.warning("%s v%d: could not fetch %s (drift not tracked): %s", self.name, version, REFERENCE_FILE, exc)


def _reason(exc: Exception, path: Path | None) -> str:
    """One line a client may see: ORT's message without the server's paths."""
    text = exc.message if isinstance(exc, ImgServeError) else f"{type(exc).__name__}: {exc}"
    if path is not None:
        text = text.replace(str(path), path.name)
    text = " ".join(text.split())
    return text if len(text) <= 240 else text[:237] + "..."
