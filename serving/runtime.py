"""The data plane shared by every front end (HTTP, OIP REST, OIP gRPC): owns the loaded model,
swaps versions without dropping requests, and feeds one micro-batcher.

Hot swap: the new version is loaded and warmed beside the old one (in a thread, off the event loop), then
one reference is replaced. A request captures the model it was preprocessed for, so it finishes on that
version even if a swap happens meanwhile; the old session is freed when the last such request is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.batcher import MicroBatcher
from inference.errors import ImgServeError, InvalidInput, NotReady, RegistryError
from inference.imagecodec import decode_image, load_image, open_image
from inference.metadata import ModelCard
from inference.preprocess import image_to_pixels, normalize, to_model_layout
from inference.registry import Registry, utc_now
from inference.session import OnnxClassifier, top_k

from .admission import Admission
from .settings import ServeSettings

log = logging.getLogger(__name__)

INLINE_DECODE_MAX_BYTES = 64 * 1024  # bigger payloads are not even parsed on the event loop


@dataclass(frozen=True)
class Classification:
    """Probabilities for N inputs and the exact model that produced them."""

    probabilities: np.ndarray  # float32 [N, C]
    model: OnnxClassifier

    @property
    def card(self) -> ModelCard:
        return self.model.card

    def labels(self) -> list[str]:
        idx = self.probabilities.argmax(axis=1)
        return [self.card.labels[i] for i in idx]

    def top_k(self, k: int) -> list[list[dict[str, Any]]]:
        return top_k(self.probabilities, self.card.labels, k)


# (old label or None, new label, seconds to load+warm)
SwapObserver = Callable[[str | None, str, float], None]


class ModelRuntime:
    def __init__(
        self,
        settings: ServeSettings,
        *,
        on_batch: Callable[[Any, int, float, float], None] | None = None,
        on_swap: SwapObserver | None = None,
        on_admit: Callable[[int, int], None] | None = None,
    ):
        self.settings = settings
        self.registry = Registry(settings.models_dir)
        self.batcher = MicroBatcher(settings.batching(), on_batch=on_batch)
        self._decode_pool = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="decode")
        self._model: OnnxClassifier | None = None
        self._swap_lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._on_swap = on_swap
        self.limits = settings.decode_limits()
        self._inline_pixels = settings.inline_decode_pixels
        self.last_error: str | None = None  # why the configured version could not be served, if it could not
        self.serving_since: str | None = None  # UTC time of the last swap
        self._on_admit = on_admit
        self.admission = Admission(settings.inflight_limit(), self.batcher.retry_after, on_change=self._admitted)

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load and warm the configured version, start batching and the alias watch.

        A registry without a servable version does not crash the process: the failure is logged, ``ready``
        stays False (so ``/readyz`` answers 503) and the alias watch keeps trying, so a replica started before
        its model was published becomes ready on its own."""
        try:
            await self.reload()
        except ImgServeError as exc:
            self.last_error = exc.message
            log.error(
                "no model to serve yet: %s; not ready until %s@%s loads%s",
                exc.message, self.settings.model, self.settings.version,
                "" if self.settings.poll_interval_s > 0 else " (alias watch is off: POST /reload after fixing it)",
            )
        self.batcher.start()
        if self.settings.poll_interval_s > 0:
            self._watch_task = asyncio.create_task(self._watch(), name="alias-watch")

    async def stop(self) -> None:
        if self._watch_task:
            self._watch_task.cancel()
            try:
                await self._watch_task
            except asyncio.CancelledError:
                pass
        await self.batcher.close()
        self._decode_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> OnnxClassifier:
        if self._model is None:
            reason = f": {self.last_error}" if self.last_error else ""
            raise NotReady(f"the model is not loaded yet{reason}", retry_after=max(1.0, self.settings.poll_interval_s))
        return self._model

    def describe(self) -> dict[str, Any]:
        """What ``GET /model`` shows: the served version's card, minus nothing a client could misuse."""
        model = self.model
        card = model.card
        return {
            "name": card.name,
            "version": card.version,
            "variant": model.variant,
            "alias": self.settings.version,
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
            **self._variant_note(model),
        }

    def _variant_note(self, model: OnnxClassifier) -> dict[str, Any]:
        """Why the served variant is not the configured one (an import without calibration has no INT8)."""
        if model.variant == self.settings.variant:
            return {}
        why = (model.card.export.get("int8") or {}).get("reason", "this version has no such file")
        return {"variant_note": f"{self.settings.variant} is not available for this version ({why}); serving {model.variant}"}

    # ---- hot swap ----------------------------------------------------------------------------------
    async def reload(self, ref: str | int | None = None) -> dict[str, Any]:
        """Serve ``ref`` (default: the configured alias) if it differs from what is served now."""
        name, variant = self.settings.model, self.settings.variant
        ref = self.settings.version if ref is None else ref
        async with self._swap_lock:
            loop = asyncio.get_running_loop()
            version = await loop.run_in_executor(None, self.registry.resolve, name, ref)
            card = await loop.run_in_executor(None, self.registry.card, name, version)
            variant = variant if variant in card.variants else "fp32"  # imported without INT8: fp32 only
            current = self._model
            if current is not None and current.card.version == version and current.variant == variant:
                self.last_error = None
                return {"changed": False, "model": name, "version": version, "variant": variant}
            t0 = time.perf_counter()
            new = await loop.run_in_executor(None, self._load_and_warm, name, version, variant)
            seconds = time.perf_counter() - t0
            self._model = new  # the swap: one reference
            self.last_error = None
            self.serving_since = utc_now()
            old_label = current.label if current else None
            log.info("now serving %s (was %s); load+warm %.0f ms", new.label, old_label, 1e3 * seconds)
            if self._on_swap:
                self._on_swap(old_label, new.label, seconds)
            return {
                "changed": True,
                "model": name,
                "version": version,
                "variant": variant,
                "previous_version": current.card.version if current else None,
                "load_seconds": round(seconds, 3),
            }

    def _load_and_warm(self, name: str, version: int, variant: str) -> OnnxClassifier:
        card = self.registry.card(name, version)
        try:
            model = OnnxClassifier.load(
                self.registry.model_file(name, version, variant), card, variant, self.settings.session_options()
            )
            model.warmup()
            if self.settings.auto_batch and self.settings.max_batch_size > 1:
                model.max_batch = model.efficient_batch(self.settings.max_batch_size)
                log.info("%s: batches of up to %d rows (fastest per row here)", model.label, model.max_batch)
        except ImgServeError:
            raise
        except Exception as exc:  # ORT's messages carry file paths: log them, tell the client only what failed
            log.exception("loading %s v%s (%s) failed", name, version, variant)
            raise RegistryError(
                f"model {name!r} v{version} ({variant}) could not be loaded ({type(exc).__name__}); see the server log"
            ) from exc
        return model

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.reload()
            except asyncio.CancelledError:
                raise
            except ImgServeError as exc:  # keep serving the current version; say why (once per distinct reason)
                if exc.message != self.last_error:
                    log.warning("alias watch: keeping %s: %s", self._model.label if self._model else None, exc.message)
                self.last_error = exc.message
            except Exception:
                log.exception("alias watch: keeping %s", self._model.label if self._model else None)

    # ---- admission ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Every transport's prediction requests pass here before their body is read or decoded: 503 /
        UNAVAILABLE at once when no model is loaded or the worker's in-flight limit is reached."""
        self.model  # noqa: B018 - raises NotReady before a body nobody can serve is read
        with self.admission.slot():
            yield

    def _admitted(self, inflight: int) -> None:
        if self._on_admit is not None:
            self._on_admit(inflight, self.batcher.queue_depth)

    # ---- data plane --------------------------------------------------------------------------------
    def _decode_to_pixels(self, data: bytes, model: OnnxClassifier) -> np.ndarray:
        spec = model.card.preprocessing
        image = decode_image(data, self.limits, draft=(spec.pil_mode, (spec.width, spec.height)))
        return image_to_pixels(image, spec)

    def _load_to_pixels(self, image: Any, model: OnnxClassifier) -> np.ndarray:
        spec = model.card.preprocessing
        return image_to_pixels(load_image(image, draft=(spec.pil_mode, (spec.width, spec.height))), spec)

    def _start_decode(self, data: bytes, model: OnnxClassifier, loop: asyncio.AbstractEventLoop) -> Any:
        """Decode + resize one image: the pixels, or a future of them. A small image (``inline_decode_pixels``,
        e.g. a 28x28 PNG: ~40 us) is done right here on the event loop: handing it to the pool and back costs
        more CPU than the decode itself, plus two thread wake-ups of latency, and Pillow holds the GIL for most
        of such a decode anyway. Anything bigger goes to the pool, where Pillow's C decoders run in parallel
        with the loop."""
        if self._inline_pixels and len(data) <= INLINE_DECODE_MAX_BYTES:
            image = open_image(data, self.limits)  # the header only: format, size and frame checks
            if image.width * image.height <= self._inline_pixels:
                return self._load_to_pixels(image, model)
            return loop.run_in_executor(self._decode_pool, self._load_to_pixels, image, model)
        return loop.run_in_executor(self._decode_pool, self._decode_to_pixels, data, model)

    async def classify_images(self, images: list[bytes], *, timeout_s: float | None = None) -> Classification:
        """Encoded images -> probabilities, one row per image, from one model version."""
        if not images:
            raise InvalidInput("no images given")
        model = self.model
        loop = asyncio.get_running_loop()
        if len(images) == 1:
            pixels = self._start_decode(images[0], model, loop)
            if isinstance(pixels, asyncio.Future):
                pixels = await pixels
            pixels = pixels[None]
        else:
            decoded: list[Any] = []
            for data in images:
                try:
                    decoded.append(self._start_decode(data, model, loop))
                except Exception as exc:  # reported below, in image order, after the pool is done with the rest
                    decoded.append(exc)
            pending = [d for d in decoded if isinstance(d, asyncio.Future)]
            if pending:
                await asyncio.wait(pending)
            for i, item in enumerate(decoded):
                if isinstance(item, asyncio.Future):
                    decoded[i] = item.exception() or item.result()
            for i, item in enumerate(decoded):
                if isinstance(item, BaseException):
                    if isinstance(item, InvalidInput):
                        raise type(item)(f"image {i}: {item.message}") from None
                    raise item
            pixels = np.stack(decoded)
        return await self.classify_pixels(pixels, model=model, timeout_s=timeout_s)

    async def classify_pixels(
        self, pixels: np.ndarray, *, model: OnnxClassifier | None = None, timeout_s: float | None = None
    ) -> Classification:
        """uint8 NHWC pixels already at the model's size -> probabilities."""
        model = model or self.model
        if pixels.dtype != np.uint8:
            raise InvalidInput(f"pixel tensors must be uint8, got {pixels.dtype}")
        return await self.classify_tensor(normalize(pixels, model.card.preprocessing), model=model, timeout_s=timeout_s)

    async def classify_tensor(
        self, batch: np.ndarray, *, model: OnnxClassifier | None = None, timeout_s: float | None = None
    ) -> Classification:
        """float32 NHWC, already normalised -> probabilities."""
        model = model or self.model
        spec = model.card.preprocessing
        if batch.ndim != 4 or tuple(batch.shape[1:]) != spec.shape:
            raise InvalidInput(f"expected a tensor shaped [N, {spec.height}, {spec.width}, {spec.channels}], got {list(batch.shape)}")
        if batch.shape[0] > self.settings.max_batch_images:
            raise InvalidInput(f"{batch.shape[0]} inputs in one request; the limit is {self.settings.max_batch_images}")
        rows = to_model_layout(np.ascontiguousarray(batch, dtype=np.float32), spec)
        probs = await self.batcher.submit(model, rows, timeout_s=timeout_s)
        return Classification(probs, model)
