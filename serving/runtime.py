"""The data plane shared by every front end (HTTP, OIP REST, OIP gRPC): the worker's served models (one
:class:`serving.slot.ModelSlot` each: alias, variant, batcher, hot swap), decoding and admission.

Several models (``IMGSERVE_MODELS``) share the decode pool and one admission control; each has its own batcher,
with the worker's lanes shared out between them, and swaps on its own. ``IMGSERVE_MODEL`` alone is one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.batcher import MicroBatcher, OutcomeObserver
from inference.errors import ImgServeError, InvalidInput, NotFound
from inference.imagecodec import decode_image, load_image, open_image
from inference.metadata import ModelCard
from inference.preprocess import image_to_pixels, normalize, to_model_layout
from inference.registry import Registry
from inference.session import OnnxClassifier, top_k

from .admission import Admission
from .ratelimit import RateLimiter
from .settings import ServeSettings
from .slot import FallbackObserver, ModelSlot, SlotConfig, SwapObserver

log = logging.getLogger(__name__)

# (the model that answered, probabilities [N, C], uint8 NHWC pixels, encoded images or None, perf_counter at start)
ClassifiedObserver = Callable[[OnnxClassifier, np.ndarray, np.ndarray, "list[bytes] | None", float], None]

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


class ModelRuntime:
    """Every model this worker serves (one :class:`ModelSlot` each, the default first), the decode pool and
    the admission control they share. ``name=None`` everywhere means the default model."""

    def __init__(
        self,
        settings: ServeSettings,
        *,
        on_batch: Callable[[Any, int, float, float], None] | None = None,
        on_swap: SwapObserver | None = None,
        on_admit: Callable[[int, int], None] | None = None,
        on_request: OutcomeObserver | None = None,
        on_classified: ClassifiedObserver | None = None,
        on_load_error: Callable[[str], None] | None = None,
        on_canary_abort: Callable[[str, int, str], None] | None = None,
        on_shadow: tuple[Any, Any] | None = None,
        on_fallback: FallbackObserver | None = None,
        rate_limiter: RateLimiter | None = None,
    ):
        self.settings = settings
        self.registry = Registry(settings.models_dir, cache_dir=settings.cache_dir)
        specs = settings.model_specs(self.registry.list_models)
        self.slots: dict[str, ModelSlot] = {}
        for name, variant in specs:
            config = SlotConfig(
                name, variant, settings.version, settings.batching(len(specs)), settings.session_options(),
                settings.auto_batch, settings.poll_interval_s, settings.canary_policy(),
            )
            self.slots[name] = ModelSlot(
                config, self.registry, on_swap=on_swap, on_batch=on_batch, on_request=on_request,
                on_load_error=on_load_error, on_fallback=on_fallback, on_canary_abort=on_canary_abort,
                on_shadow=on_shadow,
            )
        self.default = specs[0][0]
        self._decode_pool = ThreadPoolExecutor(max_workers=settings.decode_threads, thread_name_prefix="decode")
        self.limits = settings.decode_limits()
        self._inline_pixels = settings.inline_decode_pixels
        self._on_admit = on_admit
        self._on_classified = on_classified  # live ops: prediction log, drift (serving/ops.py)
        self.rate_limiter = rate_limiter
        self.admission = Admission(settings.inflight_limit(), self.retry_after, on_change=self._admitted)

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load and warm every model (together), start their batchers and alias watches. A model that cannot be
        loaded does not crash the process: that slot stays not ready (so ``/readyz`` answers 503) and its alias
        watch keeps trying, so a replica started before its model was published becomes ready on its own."""
        await asyncio.gather(*(slot.start() for slot in self.slots.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(slot.stop() for slot in self.slots.values()))
        self._decode_pool.shutdown(wait=False, cancel_futures=True)

    @property
    def ready(self) -> bool:
        """Every configured model is loaded (Triton's strict readiness: a client may call any of them)."""
        return all(slot.ready for slot in self.slots.values())

    def slot(self, name: str | None = None) -> ModelSlot:
        try:
            return self.slots[name or self.default]
        except KeyError:
            served = ", ".join(repr(n) for n in self.slots)
            raise NotFound(f"unknown model {name!r}; this server serves {served}") from None

    @property
    def model(self) -> OnnxClassifier:
        """The default model (NotReady while it loads)."""
        return self.slot().model

    @property
    def batcher(self) -> MicroBatcher:
        """The default model's batcher."""
        return self.slot().batcher

    @property
    def last_error(self) -> str | None:
        return next((s.last_error for s in self.slots.values() if s.last_error), None)

    @property
    def queue_depth(self) -> int:
        return sum(slot.batcher.queue_depth for slot in self.slots.values())

    def retry_after(self) -> float:
        return max(slot.batcher.retry_after() for slot in self.slots.values())

    def describe(self, name: str | None = None) -> dict[str, Any]:
        """``GET /model[?model=NAME]``: the served version's card."""
        return self.slot(name).describe()

    def list_models(self) -> list[dict[str, Any]]:
        """``GET /models``: every served model, the default first, with its state."""
        out = []
        for name, slot in self.slots.items():
            entry: dict[str, Any] = {"name": name, "default": name == self.default, "ready": slot.ready}
            if slot.ready:
                model = slot.model
                entry.update(version=model.card.version, variant=model.variant, labels=model.card.num_classes,
                             execution_provider=model.provider)
                if slot.fallback is not None:
                    entry["fallback"] = slot.fallback_info()
            elif slot.last_error:
                entry["error"] = slot.last_error
            out.append(entry)
        return out

    async def reload(self, ref: str | int | None = None, name: str | None = None) -> dict[str, Any]:
        """Hot-swap one model (``name``) or, without a name, every model to what its alias says now. The answer is
        the (default) model's, plus ``models`` with each one's when several are served."""
        if name is not None or len(self.slots) == 1:
            return await self.slot(name).reload(ref)
        results = [await slot.reload(ref) for slot in self.slots.values()]
        return {**results[0], "models": results}

    # ---- admission ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def admit(self, name: str | None = None, client: tuple[str | None, str | None] | None = None) -> Iterator[None]:
        """Every transport's prediction requests pass here before their body is read or decoded: 404 for a
        model not served, 503 / UNAVAILABLE at once when it is not loaded or the worker's in-flight limit
        (one for all models) is reached, 429 / RESOURCE_EXHAUSTED when ``client``
        (serving.ratelimit.client_key) is over its rate limit."""
        self.slot(name).model  # noqa: B018 - raises NotReady before a body nobody can serve is read
        if self.rate_limiter is not None and client is not None:
            self.rate_limiter.check(client)
        with self.admission.slot():
            yield

    def _admitted(self, inflight: int) -> None:
        if self._on_admit is not None:
            self._on_admit(inflight, self.queue_depth)

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

    async def classify_images(
        self, images: list[bytes], *, name: str | None = None, timeout_s: float | None = None
    ) -> Classification:
        """Encoded images -> probabilities, one row per image, from one version of model ``name``."""
        if not images:
            raise InvalidInput("no images given")
        started = time.perf_counter()
        model = self.slot(name).pick()  # production, or the canary for its share of requests
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
        return await self.classify_pixels(pixels, model=model, timeout_s=timeout_s, images=images, started=started)

    async def classify_pixels(
        self, pixels: np.ndarray, *, model: OnnxClassifier | None = None, timeout_s: float | None = None,
        images: list[bytes] | None = None, started: float | None = None,
    ) -> Classification:
        """uint8 NHWC pixels already at the model's size -> probabilities. ``images`` (the encoded inputs) and
        ``started`` only feed the ``on_classified`` observer."""
        started = time.perf_counter() if started is None else started
        model = model or self.model
        if pixels.dtype != np.uint8:
            raise InvalidInput(f"pixel tensors must be uint8, got {pixels.dtype}")
        result = await self.classify_tensor(normalize(pixels, model.card.preprocessing), model=model, timeout_s=timeout_s)
        if self._on_classified is not None:
            self._on_classified(model, result.probabilities, pixels, images, started)
        return result

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
        slot = self.slot(model.card.name)
        t0 = time.perf_counter()
        try:
            probs = await slot.batcher.submit(model, rows, timeout_s=timeout_s)
        except ImgServeError:
            raise  # shed, past its deadline, shutting down: load, not the version's doing
        except Exception:
            slot.record(model, False, time.perf_counter() - t0)  # the model failed: the canary guard counts it
            raise
        slot.record(model, True, time.perf_counter() - t0)
        slot.mirror(model, rows, probs)
        return Classification(probs, model)
