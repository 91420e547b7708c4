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
import logging
import time
from collections.abc import Callable
from typing import Any

from inference.batcher import BatchingConfig, MicroBatcher, OutcomeObserver
from inference.errors import ImgServeError, NotReady, VersionNotLoadable
from inference.memory import release_freed_memory_later
from inference.registry import Registry, utc_now
from inference.session import OnnxClassifier, SessionOptions

from .canary import CanaryPolicy, CanaryRollout
from .fallback import fallback_candidates
from .loading import VersionLoader
from .shadow import CompareObserver, ShadowRollout, ShedObserver

log = logging.getLogger(__name__)
TRIM_AFTER_SWAP_S = 3.0  # most requests on the old model are done by then (p99 is milliseconds to ~0.3 s)

# (old label or None, new label, seconds to load+warm, execution provider of the new one)
SwapObserver = Callable[[str | None, str, float, str], None]
# (model name, True while it serves a fallback instead of its alias target)
FallbackObserver = Callable[[str, bool], None]


@dataclasses.dataclass(frozen=True)
class Fallback:
    """Serving another version because the alias target cannot be loaded."""

    wanted: int  # the version the alias points at
    reason: str  # why it is not served (names the version)


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
        on_fallback: FallbackObserver | None = None,
        on_canary_abort: Callable[[str, int, str], None] | None = None,
        on_shadow: tuple[CompareObserver, ShedObserver] | None = None,
    ):
        self.config = config
        self.name = config.name
        self.registry = registry
        self.batcher = MicroBatcher(config.batching, on_batch=on_batch, on_request=on_request)
        self._model: OnnxClassifier | None = None
        self._swap_lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._on_swap = on_swap
        self.loader = VersionLoader(  # on_load_error: once per version that could not be loaded or warmed
            self.name, registry, config.session, batch_limit=config.batching.max_batch_size,
            auto_batch=config.auto_batch, on_failure=on_load_error,
        )
        self._on_fallback = on_fallback
        self.fallback: Fallback | None = None
        self.canary = CanaryRollout(self.name, registry, self.loader, config.canary, on_abort=on_canary_abort)
        compare, shed = on_shadow or (None, None)
        self.shadow = ShadowRollout(self.name, registry, self.loader, self.batcher, on_compare=compare, on_shed=shed)
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
            if self.ready:  # a fallback is served; reload() said so loudly
                pass
            else:
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
        if self.fallback is not None:
            info["fallback"] = self.fallback_info()
        return info

    def fallback_info(self) -> dict[str, Any] | None:
        """What ``/model`` and ``/models`` say while a fallback is served."""
        if self.fallback is None:
            return None
        return {"alias": self.config.ref, "alias_version": self.fallback.wanted, "reason": self.fallback.reason}

    # ---- hot swap ----------------------------------------------------------------------------------
    async def reload(self, ref: str | int | None = None, *, retry: bool = True) -> dict[str, Any]:
        """Serve ``ref`` (default: the configured alias) if it differs from what is served now.

        If that version cannot be loaded, the current one stays (a worker with none yet loads the newest
        earlier production version it can, see serving/fallback.py) and VersionNotLoadable (409) names the version
        and the reason. ``retry=False`` (the alias watch) skips versions that failed a moment ago."""
        name = self.name
        ref = self.config.ref if ref is None else ref
        async with self._swap_lock:
            loop = asyncio.get_running_loop()
            version = await loop.run_in_executor(None, self.registry.resolve, name, ref)
            variant = await loop.run_in_executor(None, self._variant_for, version)
            current = self._model
            if current is not None and current.card.version == version and current.variant == variant:
                self.last_error = None
                self._set_fallback(None)
                if ref == self.config.ref:
                    await self.canary.sync(current, self.config, loop)
                    await self.shadow.sync(current, self.config, loop)
                return {"changed": False, "model": name, "version": version, "variant": variant}
            t0 = time.perf_counter()
            try:
                new = await loop.run_in_executor(None, lambda: self.loader.load(version, variant, retry=retry))
            except VersionNotLoadable as exc:
                self.last_error = exc.message
                if current is None:
                    current = await self._serve_fallback(version)
                if current is None:
                    raise
                self._set_fallback(Fallback(version, exc.message))
                self.last_error = f"{exc.message}; still serving v{current.card.version}"
                raise VersionNotLoadable(self.last_error) from None
            seconds = time.perf_counter() - t0
            self._swap(new, current, seconds)
            self.last_error = None
            self._set_fallback(None)
            if ref == self.config.ref:
                await self.canary.sync(new, self.config, loop)
                await self.shadow.sync(new, self.config, loop)
            return {
                "changed": True,
                "model": name,
                "version": version,
                "variant": variant,
                "previous_version": current.card.version if current else None,
                "load_seconds": round(seconds, 3),
            }

    def _variant_for(self, version: int) -> str:
        card = self.registry.card(self.name, version)
        return self.config.variant if self.config.variant in card.variants else "fp32"

    def _swap(self, new: OnnxClassifier, current: OnnxClassifier | None, seconds: float) -> None:
        self._model = new  # the swap: one reference
        self.serving_since = utc_now()
        old_label = current.label if current else None
        log.info("now serving %s (was %s); load+warm %.0f ms", new.label, old_label, 1e3 * seconds)
        if self._on_swap:
            self._on_swap(old_label, new.label, seconds, new.provider)
        if current is not None:  # the old session's memory, once its last request is done (inference/memory.py)
            release_freed_memory_later(TRIM_AFTER_SWAP_S)

    async def _serve_fallback(self, target: int) -> OnnxClassifier | None:
        """Load the best earlier version that loads (nothing is served yet); None if none does."""
        loop = asyncio.get_running_loop()
        for version in await loop.run_in_executor(None, fallback_candidates, self.registry, self.name, target):
            try:
                variant = await loop.run_in_executor(None, self._variant_for, version)
                t0 = time.perf_counter()
                new = await loop.run_in_executor(None, lambda v=version, w=variant: self.loader.load(v, w, retry=False))
            except ImgServeError:
                continue  # logged once by the loader
            self._swap(new, None, time.perf_counter() - t0)
            return new
        return None

    def _set_fallback(self, fallback: Fallback | None) -> None:
        """Say it loudly, once per change: log, ``/model``'s ``fallback``, the ``imgserve_model_fallback`` gauge."""
        if (fallback and fallback.wanted) == (self.fallback and self.fallback.wanted):
            self.fallback = fallback
            return
        if fallback is not None:
            log.error(
                "FALLBACK: %s@%s is v%d, which cannot be loaded; serving v%d instead until it is fixed (roll back or "
                "promote a good version; POST /reload retries). %s", self.name, self.config.ref, fallback.wanted,
                self.model.card.version, fallback.reason,
            )
        elif self.fallback is not None:
            log.warning("fallback over: %s serves its %s version again", self.name, self.config.ref)
        self.fallback = fallback
        if self._on_fallback is not None:
            self._on_fallback(self.name, fallback is not None)

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
                await self.reload(retry=False)
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
    def pick(self) -> OnnxClassifier:
        """The version that answers this request: the canary for its weight's share of requests."""
        return self.canary.pick(self.model)

    def served(self) -> list[OnnxClassifier]:
        """Every version answering now: production, then the canary if there is one."""
        return [self.model] + ([self.canary.model] if self.canary.model is not None else [])

    def record(self, model: OnnxClassifier, ok: bool, seconds: float) -> None:
        """One request's outcome on ``model`` (the runtime calls this): feeds the canary guard."""
        self.canary.record(model, ok, seconds, self._model)

    def mirror(self, model: OnnxClassifier, rows: Any, probabilities: Any) -> None:
        """Production answered ``rows``: the shadow may run them too, in the background (serving/shadow.py)."""
        self.shadow.mirror(model, rows, probabilities, self._model)
