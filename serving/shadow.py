"""Shadow rollouts: a ``shadow`` alias with a share (``imgserve models shadow NAME V --share 20``). After production
has answered a request, that share of requests is run again on the shadow version, in the background: the client
never waits for it and never sees its result. The two top-1 labels are compared and both confidences recorded
(``imgserve_shadow_*`` metrics: agreement rate = agreed / compared, mean confidence = confidence sum / compared).

Shed first: a mirror is skipped (and counted as shed) whenever the batcher has anything queued, so shadow work only
ever uses idle capacity and can never push a real request into the queue's 503. It also needs the shadow version to
take the same input as production (same preprocessing); otherwise nothing is mirrored (logged once).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from inference.errors import ImgServeError
from inference.session import OnnxClassifier

log = logging.getLogger(__name__)

# (model, shadow version, agreed, production confidence, shadow confidence); (model, shadow version)
CompareObserver = Callable[[str, int, bool, float, float], None]
ShedObserver = Callable[[str, int], None]


class ShadowRollout:
    def __init__(self, name: str, registry: Any, loader: Any, batcher: Any, *,
                 on_compare: CompareObserver | None = None, on_shed: ShedObserver | None = None):
        self.name, self.registry, self.loader, self.batcher = name, registry, loader, batcher
        self.model: OnnxClassifier | None = None
        self.share = 0.0  # percent of requests mirrored
        self._on_compare, self._on_shed = on_compare, on_shed
        self._rng = random.Random()
        self._tasks: set[asyncio.Task[None]] = set()

    async def sync(self, production: OnnxClassifier | None, config: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Load, re-share or drop the shadow the aliases name (only for a slot that follows ``production``)."""
        if config.ref != "production" or production is None:
            return
        aliases = await loop.run_in_executor(None, self.registry.aliases, self.name)
        target, share = aliases.get("shadow"), float((aliases.get("weights") or {}).get("shadow") or 0)
        if target is None or share <= 0 or int(target) == production.card.version:
            if self.model is not None:
                log.info("shadow %s ended", self.model.label)
            self.model = None
            return
        if self.model is None or self.model.card.version != int(target):
            try:
                card = await loop.run_in_executor(None, self.registry.card, self.name, int(target))
                if card.preprocessing != production.card.preprocessing:
                    log.error("shadow v%s of %s takes other inputs than production; nothing mirrored", target, self.name)
                    self.model = None
                    return
                variant = config.variant if config.variant in card.variants else "fp32"
                self.model = await loop.run_in_executor(None, self.loader.load, int(target), variant)
            except ImgServeError as exc:
                log.error("shadow v%s of %s not loaded: %s", target, self.name, exc.message)
                self.model = None
                return
        self.share = share
        log.info("shadow %s mirrors %g %% of requests to %s", self.model.label, share, production.label)

    def mirror(self, model: OnnxClassifier, rows: np.ndarray, probabilities: np.ndarray,
               production: OnnxClassifier | None) -> None:
        """After production answered ``rows``: maybe run them on the shadow too, in the background."""
        shadow = self.model
        if shadow is None or model is not production or self._rng.random() * 100.0 >= self.share:
            return
        if self.batcher.queue_depth > 0:  # real requests are waiting: shadow work goes first
            if self._on_shed:
                self._on_shed(self.name, shadow.card.version)
            return
        task = asyncio.get_running_loop().create_task(self._compare(shadow, rows, probabilities))
        self._tasks.add(task)  # a reference until done (the loop keeps only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _compare(self, shadow: OnnxClassifier, rows: np.ndarray, production_probs: np.ndarray) -> None:
        try:
            probs = await self.batcher.submit(shadow, rows, timeout_s=1.0)
        except Exception as exc:  # shed, late, or the shadow failed: never the client's problem
            log.debug("shadow %s: %s", shadow.label, exc)
            if self._on_shed:
                self._on_shed(self.name, shadow.card.version)
            return
        if self._on_compare is None:
            return
        ours, theirs = production_probs.argmax(axis=1), probs.argmax(axis=1)
        for i in range(len(ours)):
            self._on_compare(self.name, shadow.card.version, bool(ours[i] == theirs[i]),
                             float(production_probs[i, ours[i]]), float(probs[i, theirs[i]]))
