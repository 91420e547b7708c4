"""One served model inside a worker: its alias, variant, micro-batcher, hot swap and alias watch.

``ModelRuntime`` holds one slot per name in ``IMGSERVE_MODELS``; slots share nothing but the worker's decode
pool and admission control, so a swap, a slow model or a broken alias of one never holds up another.

Hot swap: the new version is loaded and warmed beside the old one (in a thread, off the event loop), then
one reference is replaced. A request captures the model it was preprocessed for, so it finishes on that
version even if a swap happens meanwhile; the old session is freed when the last such request is done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from inference.batcher import BatchingConfig, MicroBatcher, OutcomeObserver
from inference.errors import ImgServeError, NotFound, NotReady, RegistryError
from inference.registry import Registry, utc_now
from inference.session import OnnxClassifier, SessionOptions

from .canary import CanaryGuard, CanaryPolicy

log = logging.getLogger(__name__)

# (old label or None, new label, seconds to load+warm, execution provider of the new one)
SwapObserver = Callable[[str | None, str, float, str], None]


@dataclasses.dataclass(frozen=True)
class SlotConfig:
    """What the settings say about one served model."""

    name: str
    variant: str  # wanted; a version without that file is served as fp32 (and /model says why)
    ref: str  # alias or version to follow, e.g. "production"
    batching: BatchingConfig
    session: SessionOptions
    auto_batch: bool
    poll_interval_s: float
    canary: CanaryPolicy = CanaryPolicy()


class ModelSlot:
    def __init__(
        self, config: SlotConfig, registry: Registry, *, on_swap: SwapObserver | None = None,
        on_batch: Callable[[Any, int, float, float], None] | None = None,
        on_request: OutcomeObserver | None = None,
        on_load_error: Callable[[str], None] | None = None,
        on_canary_abort: Callable[[str, int, str], None] | None = None,
    ):
        self.config = config
        self.name = config.name
        self.registry = registry
        self.batcher = MicroBatcher(config.batching, on_batch=on_batch, on_request=on_request)
        self._model: OnnxClassifier | None = None
        self._swap_lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._on_swap = on_swap
        self._on_load_error = on_load_error  # (model name): a version that could not be loaded or warmed
        self._canary: OnnxClassifier | None = None  # loaded beside production while the `canary` alias exists
        self.canary_weight = 0.0  # percent of requests routed to it
        self.guard = CanaryGuard(config.canary)
        self._on_canary_abort = on_canary_abort
        self._aborting = False
        self._rng = random.Random()  # its own: something in the worker reseeds the global one (measured: 5 % for 10 %)
        self.last_error: str | None = None  # why the configured version could not be served, if it could not
        self.serving_since: str | None = None  # UTC time of the last swap

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load and warm the configured version, start batching and the alias watch. A model that cannot be
        loaded yet leaves this slot not ready (logged) while the watch keeps trying."""
        try:
            await self.reload()
        except ImgServeError as exc:
            self.last_error = exc.message
            log.error(
                "no model to serve yet: %s; not ready until %s@%s loads%s", exc.message, self.name, self.config.ref,
                "" if self.config.poll_interval_s > 0 else " (alias watch is off: POST /reload after fixing it)",
            )
        self.batcher.start()
        if self.config.poll_interval_s > 0:
            self._watch_task = asyncio.create_task(self._watch(), name=f"alias-watch-{self.name}")

    async def stop(self) -> None:
        if self._watch_task:
            self._watch_task.cancel()
            try:
                await self._watch_task
            except asyncio.CancelledError:
                pass
        await self.batcher.close()

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> OnnxClassifier:
        if self._model is None:
            reason = f": {self.last_error}" if self.last_error else ""
            raise NotReady(
                f"model '{self.name}' is not loaded yet{reason}", retry_after=max(1.0, self.config.poll_interval_s)
            )
        return self._model

    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` shows: the served version's card, minus nothing a client could misuse."""
        model = self.model
        card = model.card
        info = {
            "name": card.name,
            "version": card.version,
            "variant": model.variant,
            "alias": self.config.ref,
            "labels": list(card.labels),
            "num_classes": card.num_classes,
            "preprocessing": dataclasses.asdict(card.preprocessing),
            "inputs": [dataclasses.asdict(t) for t in card.inputs],
            "outputs": [dataclasses.asdict(t) for t in card.outputs],
            "architecture": card.architecture,
            "metrics": card.metrics,
            "created_at": card.created_at,
            "parent_version": card.parent_version,
            "serving_since": self.serving_since,
            "variants": list(card.variants),
            "execution_provider": model.provider,
            "batching": {"lanes": self.config.batching.lanes, "max_batch_size": model.max_batch
                         or self.config.batching.max_batch_size},
        }
        if model.variant != self.config.variant:  # an import without calibration images has no INT8
            why = (card.export.get("int8") or {}).get("reason", "this version has no such file")
            info["variant_note"] = f"{self.config.variant} is not available for this version ({why}); serving {model.variant}"
        return info

    # ---- hot swap ----------------------------------------------------------------------------------
    async def reload(self, ref: str | int | None = None) -> dict[str, Any]:
        """Serve ``ref`` (default: the configured alias) if it differs from what is served now."""
        name = self.name
        ref = self.config.ref if ref is None else ref
        async with self._swap_lock:
            loop = asyncio.get_running_loop()
            version = await loop.run_in_executor(None, self.registry.resolve, name, ref)
            card = await loop.run_in_executor(None, self.registry.card, name, version)
            variant = self.config.variant if self.config.variant in card.variants else "fp32"
            current = self._model
            if current is not None and current.card.version == version and current.variant == variant:
                self.last_error = None
                if ref == self.config.ref:
                    await self._sync_canary(loop)
                return {"changed": False, "model": name, "version": version, "variant": variant}
            t0 = time.perf_counter()
            new = await loop.run_in_executor(None, self._load_and_warm, version, variant)
            seconds = time.perf_counter() - t0
            self._model = new  # the swap: one reference
            self.last_error = None
            self.serving_since = utc_now()
            old_label = current.label if current else None
            log.info("now serving %s (was %s); load+warm %.0f ms", new.label, old_label, 1e3 * seconds)
            if self._on_swap:
                self._on_swap(old_label, new.label, seconds, new.provider)
            if ref == self.config.ref:
                await self._sync_canary(loop)
            return {
                "changed": True,
                "model": name,
                "version": version,
                "variant": variant,
                "previous_version": current.card.version if current else None,
                "load_seconds": round(seconds, 3),
            }

    def _load_and_warm(self, version: int, variant: str) -> OnnxClassifier:
        name = self.name
        card = self.registry.card(name, version)
        try:
            model = OnnxClassifier.load(self.registry.model_file(name, version, variant), card, variant, self.config.session)
            model.warmup()
            limit = self.config.batching.max_batch_size
            if self.config.auto_batch and limit > 1:
                model.max_batch = model.efficient_batch(limit)
                log.info("%s: batches of up to %d rows (fastest per row here)", model.label, model.max_batch)
        except ImgServeError:
            if self._on_load_error:
                self._on_load_error(name)
            raise
        except Exception as exc:  # ORT's messages carry file paths: log them, tell the client only what failed
            if self._on_load_error:
                self._on_load_error(name)
            log.exception("loading %s v%s (%s) failed", name, version, variant)
            raise RegistryError(
                f"model {name!r} v{version} ({variant}) could not be loaded ({type(exc).__name__}); see the server log"
            ) from exc
        return model

    async def _watch(self) -> None:
        """Poll the alias file's tag (a stat-and-hash locally, one HEAD on S3) and reload only when it changed
        or the last attempt failed: a replica polling every 2 s costs the store almost nothing."""
        loop = asyncio.get_running_loop()
        seen: str | None = None
        while True:
            await asyncio.sleep(self.config.poll_interval_s)
            try:
                tag = await loop.run_in_executor(None, self.registry.aliases_tag, self.name)
                unchanged = tag is not None and tag == seen and self.config.ref != "latest"  # new versions move no alias
                if unchanged and self._model is not None and self.last_error is None:
                    continue
                await self.reload()
                seen = tag  # read before the reload: a change during it is picked up on the next poll
            except asyncio.CancelledError:
                raise
            except ImgServeError as exc:  # keep serving the current version; say why (once per distinct reason)
                if exc.message != self.last_error:
                    log.warning("alias watch: keeping %s: %s", self._model.label if self._model else None, exc.message)
                self.last_error = exc.message
            except Exception:
                log.exception("alias watch: keeping %s", self._model.label if self._model else None)

    # ---- canary (serving/canary.py) ----------------------------------------------------------------
    def served(self) -> list[OnnxClassifier]:
        """Every version answering now: production, then the canary if there is one."""
        return [self.model] + ([self._canary] if self._canary is not None else [])

    def pick(self) -> OnnxClassifier:
        """The version that answers this request: the canary for its weight's share of requests."""
        model = self.model
        canary = self._canary
        if canary is not None and self._rng.random() * 100.0 < self.canary_weight:
            return canary
        return model

    async def _sync_canary(self, loop: asyncio.AbstractEventLoop) -> None:
        """Load, reweight or drop the canary the aliases name (only for a slot that follows ``production``)."""
        if self.config.ref != "production" or self._model is None:
            return
        aliases = await loop.run_in_executor(None, self.registry.aliases, self.name)
        target = aliases.get("canary")
        weight = float((aliases.get("weights") or {}).get("canary") or 0)
        current = self._canary
        if target is None or weight <= 0 or int(target) == self._model.card.version:
            if current is not None:
                log.info("canary %s ended; all requests to %s", current.label, self._model.label)
                self._canary = None
                self.guard.reset()
            return
        if current is None or current.card.version != int(target):
            try:
                card = await loop.run_in_executor(None, self.registry.card, self.name, int(target))
                variant = self.config.variant if self.config.variant in card.variants else "fp32"
                self._canary = await loop.run_in_executor(None, self._load_and_warm, int(target), variant)
            except ImgServeError as exc:
                log.error("canary v%s of %s not loaded, production keeps all requests: %s", target, self.name, exc.message)
                self._canary = None
                return
            self.guard.reset()
        self.canary_weight = weight
        log.info("canary %s gets %g %% of requests beside %s", self._canary.label, weight, self._model.label)

    def record(self, model: OnnxClassifier, ok: bool, seconds: float) -> None:
        """One request's outcome on ``model`` (the runtime calls this): feeds the canary guard."""
        canary, production = self._canary, self._model
        if canary is None or production is None or self._aborting:
            return
        reason = self.guard.record(
            model.card.version, ok, seconds, production=production.card.version, canary=canary.card.version
        )
        if reason is not None:
            self._aborting = True
            self._canary = None  # stop routing to it now; the registry write follows
            asyncio.get_running_loop().create_task(self._abort(canary.card.version, reason))

    async def _abort(self, version: int, reason: str) -> None:
        loop = asyncio.get_running_loop()
        end = functools.partial(
            self.registry.end_canary, self.name, promote=False, reason=f"automatic abort: {reason}", only=version
        )
        try:
            await loop.run_in_executor(None, end)
            log.warning("canary %s v%d aborted: %s", self.name, version, reason)
            if self._on_canary_abort:
                self._on_canary_abort(self.name, version, reason)
        except NotFound:
            pass  # another worker or replica was first
        except ImgServeError as exc:
            log.error("canary %s v%d: abort could not be recorded: %s", self.name, version, exc.message)
        finally:
            self._aborting = False
            self.guard.reset()
