"""Canary rollouts: a ``canary`` alias with a weight beside ``production`` (``imgserve models canary NAME V
--weight 10``); every worker loads both versions and sends that share of requests to the canary, one choice per
request (the response names the version that answered). :class:`CanaryGuard` watches both versions' outcomes
over a sliding window and says when the canary must be aborted; the slot then removes the alias (recorded in
the alias history with the figures) and stops routing to it at once; other workers and replicas follow on their
next alias poll.

The guard's policy (documented defaults, ``IMGSERVE_CANARY_*``): over the last ``window_s`` seconds, once the
canary has answered ``min_requests``, abort if its error rate exceeds production's by more than
``max_error_increase`` (absolute: 0.05 = 5 points), or, once both have ``min_requests_p99`` answers, its p99
latency (queue + inference, decode excluded: the same for both versions) exceeds production's by both
``max_p99_ratio`` and ``min_p99_increase_s``. Errors are
the model failing (an ONNX Runtime error), never shed load or bad input.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inference.errors import ImgServeError, NotFound
from inference.session import OnnxClassifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CanaryPolicy:
    window_s: float = 60.0
    min_requests: int = 20
    min_requests_p99: int = 100  # a p99 of fewer answers is their maximum: one slow request would abort
    max_error_increase: float = 0.05
    max_p99_ratio: float = 1.5
    min_p99_increase_s: float = 0.05
    check_every: int = 5  # canary outcomes between two checks (a check sorts the window's latencies)


@dataclass(frozen=True)
class WindowStats:
    requests: int
    errors: int
    p99_s: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def describe(self) -> str:
        return f"{self.requests} requests, {100 * self.error_rate:.1f} % errors, p99 {1e3 * self.p99_s:.1f} ms"


class _Window:
    def __init__(self) -> None:
        self.events: collections.deque[tuple[float, bool, float]] = collections.deque()

    def add(self, now: float, ok: bool, seconds: float, horizon: float) -> None:
        self.events.append((now, ok, seconds))
        while self.events and self.events[0][0] < now - horizon:
            self.events.popleft()

    def stats(self, now: float, horizon: float) -> WindowStats:
        recent = [(ok, s) for t, ok, s in self.events if t >= now - horizon]
        if not recent:
            return WindowStats(0, 0, 0.0)
        latencies = sorted(s for ok, s in recent if ok) or [0.0]
        p99 = latencies[min(len(latencies) - 1, math.ceil(0.99 * len(latencies)) - 1)]
        return WindowStats(len(recent), sum(1 for ok, _ in recent if not ok), p99)


class CanaryGuard:
    """Outcomes per version over the window; :meth:`record` returns the abort reason once the policy trips."""

    def __init__(self, policy: CanaryPolicy | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.policy = policy or CanaryPolicy()
        self._clock = clock
        self._windows: dict[int, _Window] = collections.defaultdict(_Window)
        self._since_check = 0

    def reset(self) -> None:
        self._windows.clear()
        self._since_check = 0

    def record(self, version: int, ok: bool, seconds: float, *, production: int, canary: int) -> str | None:
        now = self._clock()
        self._windows[version].add(now, ok, seconds, self.policy.window_s)
        if version != canary:
            return None
        self._since_check += 1
        if self._since_check < self.policy.check_every and ok:
            return None
        self._since_check = 0
        return self.verdict(production, canary)

    def stats(self, version: int) -> WindowStats:
        return self._windows[version].stats(self._clock(), self.policy.window_s)

    def verdict(self, production: int, canary: int) -> str | None:
        """Why the canary must go (with the figures), or None."""
        p = self.policy
        can, prod = self.stats(canary), self.stats(production)
        if can.requests < p.min_requests:
            return None
        figures = f"canary v{canary}: {can.describe()}; production v{production}: {prod.describe()}; window {p.window_s:g} s"
        if can.error_rate - prod.error_rate > p.max_error_increase:
            return f"error rate {100 * can.error_rate:.1f} % > production's + {100 * p.max_error_increase:g} points ({figures})"
        enough = can.requests >= p.min_requests_p99 and prod.requests >= p.min_requests_p99
        if enough and can.p99_s > prod.p99_s * p.max_p99_ratio and can.p99_s - prod.p99_s > p.min_p99_increase_s:
            return f"p99 {1e3 * can.p99_s:.1f} ms > {p.max_p99_ratio:g} x production's ({figures})"
        return None


class CanaryRollout:
    """One model slot's canary: the loaded version, its weight, the guard, the automatic abort."""

    def __init__(self, name: str, registry: Any, loader: Any, policy: CanaryPolicy, *,
                 on_abort: Callable[[str, int, str], None] | None = None):
        self.name, self.registry, self.loader = name, registry, loader
        self.model: OnnxClassifier | None = None  # loaded beside production while the `canary` alias exists
        self.weight = 0.0  # percent of requests routed to it
        self.guard = CanaryGuard(policy)
        self._on_abort = on_abort
        self._aborting = False
        self._rng = random.Random()  # its own: something in a BentoML worker reseeds the global one (5 % for 10 %)

    def pick(self, production: OnnxClassifier) -> OnnxClassifier:
        canary = self.model
        if canary is not None and self._rng.random() * 100.0 < self.weight:
            return canary
        return production

    def _drop(self, production: OnnxClassifier | None) -> None:
        if self.model is not None:
            log.info("canary %s ended; all requests to %s", self.model.label, production.label if production else None)
        self.model = None
        self.guard.reset()

    async def sync(self, production: OnnxClassifier | None, config: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Load, reweight or drop the canary the aliases name (only for a slot that follows ``production``)."""
        if config.ref != "production" or production is None:
            return
        aliases = await loop.run_in_executor(None, self.registry.aliases, self.name)
        target = aliases.get("canary")
        weight = float((aliases.get("weights") or {}).get("canary") or 0)
        if target is None or weight <= 0 or int(target) == production.card.version:
            self._drop(production)
            return
        if self.model is None or self.model.card.version != int(target):
            try:
                card = await loop.run_in_executor(None, self.registry.card, self.name, int(target))
                variant = config.variant if config.variant in card.variants else "fp32"
                self.model = await loop.run_in_executor(None, self.loader.load, int(target), variant)
            except ImgServeError as exc:
                log.error("canary v%s of %s not loaded, production keeps all requests: %s", target, self.name, exc.message)
                self._drop(production)
                return
            self.guard.reset()
        self.weight = weight
        log.info("canary %s gets %g %% of requests beside %s", self.model.label, weight, production.label)

    def record(self, model: OnnxClassifier, ok: bool, seconds: float, production: OnnxClassifier | None) -> None:
        canary = self.model
        if canary is None or production is None or self._aborting:
            return
        reason = self.guard.record(
            model.card.version, ok, seconds, production=production.card.version, canary=canary.card.version
        )
        if reason is not None:
            self._aborting = True
            self.model = None  # stop routing to it now; the registry write follows
            asyncio.get_running_loop().create_task(self._abort(canary.card.version, reason))

    async def _abort(self, version: int, reason: str) -> None:
        loop = asyncio.get_running_loop()
        end = functools.partial(
            self.registry.end_canary, self.name, promote=False, reason=f"automatic abort: {reason}", only=version
        )
        try:
            await loop.run_in_executor(None, end)
            log.warning("canary %s v%d aborted: %s", self.name, version, reason)
            if self._on_abort:
                self._on_abort(self.name, version, reason)
        except NotFound:
            pass  # another worker or replica was first
        except ImgServeError as exc:
            log.error("canary %s v%d: abort could not be recorded: %s", self.name, version, exc.message)
        finally:
            self._aborting = False
            self.guard.reset()
