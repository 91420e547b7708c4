"""Adaptive micro-batching on an asyncio loop, with a bounded queue and per-request deadlines.

``lanes`` batches run at once, each in its own thread (ORT releases the GIL). A lane that is free takes
everything queued for the same model, up to ``max_batch_size`` rows, at once: at low load a request runs
alone with no added wait; under load the queue that builds up while the lanes are busy becomes the next
batch. ``max_wait_ms`` > 0 additionally holds a lone request briefly hoping for company (off by default:
on CPU, batching gains little per row and the wait is pure latency).

Load shedding: a request is refused at once with :class:`Overloaded` (-> 503 + Retry-After) when the queue
holds ``max_queue`` rows already, or when the estimated wait exceeds its deadline; a queued request whose
deadline passes before a lane reaches it is failed the same way. Requests are never silently dropped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import ConfigError, Overloaded

log = logging.getLogger(__name__)


class BatchModel(Protocol):
    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def _batch_limit(model: BatchModel, configured: int) -> int:
    """``max_batch_size``, or less when the model says a smaller batch runs faster per row (``max_batch``)."""
    own = getattr(model, "max_batch", None)
    return min(configured, own) if own else configured


@dataclass(frozen=True)
class BatchingConfig:
    max_batch_size: int = 32
    max_wait_ms: float = 0.0
    max_queue: int = 256  # rows waiting, not counting the batches running
    lanes: int = 2
    timeout_s: float = 10.0  # default per-request deadline
    inline_ms: float = 0.0  # run a batch on the event loop when it should take at most this long (see _run)

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue < 1:
            raise ConfigError(f"max_queue must be >= 1, got {self.max_queue}")
        if self.lanes < 1:
            raise ConfigError(f"lanes must be >= 1, got {self.lanes}")
        if self.max_wait_ms < 0 or self.timeout_s <= 0 or self.inline_ms < 0:
            raise ConfigError("max_wait_ms and inline_ms must be >= 0 and timeout_s > 0")


@dataclass
class _Request:
    model: BatchModel
    rows: np.ndarray
    deadline: float
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.perf_counter)


def _predict(model: BatchModel, parts: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """In the lane's thread (or inline): join the requests' rows and run the model; also the CPU seconds this
    thread spent on it (unlike wall time, not inflated when other processes take the cores)."""
    cpu = time.thread_time()
    out = model.predict(parts[0] if len(parts) == 1 else np.concatenate(parts))
    return out, time.thread_time() - cpu


BatchObserver = Callable[[Any, int, float, float], None]  # (model, rows, infer_seconds, max_queue_wait_s)
# (model, ok, requests, queue_seconds, compute_seconds, total_seconds), the times summed over the requests: the
# Triton-style per-request statistics of every request that reached the batcher, reported once per batch (one
# multiprocess-metrics write per figure, not per request) or once per refusal (ok False, zero times).
OutcomeObserver = Callable[[Any, bool, int, float, float, float], None]


class MicroBatcher:
    def __init__(
        self, config: BatchingConfig, *, on_batch: BatchObserver | None = None, on_request: OutcomeObserver | None = None
    ):
        self.config = config
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_rows = 0
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()  # lanes waiting for work
        self._lanes: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(max_workers=config.lanes, thread_name_prefix="ort-lane")
        self._on_batch = on_batch
        self._on_request = on_request
        self._row_seconds = 0.0  # EWMA of inference seconds per row, for wait estimates
        self._batch_cpu_s = 0.0  # EWMA of the CPU seconds of a batch's run, for _inline
        self._running = 0
        self._closed = False

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._lanes:
            return
        self._lanes = [asyncio.create_task(self._lane(i), name=f"batch-lane-{i}") for i in range(self.config.lanes)]

    async def close(self) -> None:
        self._closed = True
        for task in self._lanes:
            task.cancel()
        for task in self._lanes:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._lanes = []
        while self._queue:
            req = self._queue.popleft()
            if not req.future.done():
                req.future.set_exception(Overloaded("the server is shutting down", retry_after=1.0))
        self._queued_rows = 0
        self._executor.shutdown(wait=True)

    # ---- observability -----------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        return self._queued_rows

    @property
    def running_batches(self) -> int:
        return self._running

    def retry_after(self) -> float:
        """Seconds until the current queue should have drained (at least 1)."""
        est = self._queued_rows * self._row_seconds / self.config.lanes
        return float(max(1, math.ceil(est)))

    # ---- submit ------------------------------------------------------------------------------------
    async def submit(self, model: BatchModel, rows: np.ndarray, *, timeout_s: float | None = None) -> np.ndarray:
        """Queue ``rows`` (N >= 1 preprocessed inputs for ``model``) and await their outputs."""
        if self._closed or not self._lanes:
            raise Overloaded("the inference queue is not running", retry_after=1.0)
        n = int(rows.shape[0])
        if n < 1:
            raise ValueError("rows must hold at least one input")
        if self._queued_rows and self._queued_rows + n > self.config.max_queue:  # (a lone request may exceed it)
            self._observe(model, False)
            raise Overloaded(
                f"the inference queue is full ({self._queued_rows} waiting), retry later",
                retry_after=self.retry_after(),
            )
        timeout = self.config.timeout_s if timeout_s is None else timeout_s
        est_wait = (self._queued_rows + n) * self._row_seconds / self.config.lanes
        if self._row_seconds and est_wait > timeout:
            self._observe(model, False)
            raise Overloaded(
                f"estimated wait {est_wait:.2f}s exceeds the request deadline {timeout:.2f}s",
                retry_after=self.retry_after(),
            )
        loop = asyncio.get_running_loop()
        req = _Request(model, rows, time.perf_counter() + timeout, loop.create_future())
        self._queue.append(req)
        self._queued_rows += n
        self._wake_one()
        return await req.future

    # ---- lanes -------------------------------------------------------------------------------------
    def _take_batch(self) -> list[_Request]:
        """Pop requests for the head's model, up to max_batch_size rows; fail the ones past deadline."""
        now = time.perf_counter()
        batch: list[_Request] = []
        rows = 0
        model = None
        limit = self.config.max_batch_size
        skipped: list[_Request] = []
        while self._queue:
            req = self._queue[0]
            if req.future.done():  # client went away
                self._queue.popleft()
                self._queued_rows -= req.rows.shape[0]
                continue
            if req.deadline < now:
                self._queue.popleft()
                self._queued_rows -= req.rows.shape[0]
                req.future.set_exception(
                    Overloaded("the request waited past its deadline in the queue", retry_after=self.retry_after())
                )
                self._observe(req.model, False, 1, now - req.enqueued, 0.0, now - req.enqueued)
                continue
            if model is None:
                model = req.model
                limit = _batch_limit(model, self.config.max_batch_size)
            if req.model is not model:  # a request for another model version waits for the next batch
                skipped.append(self._queue.popleft())
                continue
            n = req.rows.shape[0]
            if batch and rows + n > limit:
                break
            self._queue.popleft()
            self._queued_rows -= n
            batch.append(req)
            rows += n
            if rows >= limit:
                break
        self._queue.extendleft(reversed(skipped))
        return batch

    def _wake_one(self) -> None:
        """Hand the queue to one idle lane (not all of them: the others would only find it empty)."""
        while self._idle:
            waiter = self._idle.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _lane(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter
            if self.config.max_wait_ms > 0 and self._queued_rows < self.config.max_batch_size:
                oldest = self._queue[0].enqueued
                delay = oldest + self.config.max_wait_ms / 1e3 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            batch = self._take_batch()
            if not batch:
                continue
            if self._queue:  # let another idle lane pick up the rest at once
                self._wake_one()
            await self._run(loop, batch)

    def _observe(
        self, model: Any, ok: bool, requests: int = 1, queue_s: float = 0.0, compute_s: float = 0.0, total_s: float = 0.0
    ) -> None:
        if self._on_request is not None:
            try:
                self._on_request(model, ok, requests, queue_s, compute_s, total_s)
            except Exception:
                log.exception("request observer failed")

    def _inline(self) -> bool:
        """Whether to run this batch right here on the event loop instead of in a lane thread. For a cheap model
        the hand-off costs more than the run: a 28x28 CNN's batch takes ~0.1-1 ms, while waking the lane thread,
        passing the GIL to it and back and resolving the future from it took ~1/3 of a worker's CPU under load
        (py-spy, c=64, loaded 2-core box). The first batch runs inline and measures the model; from then on the
        recent batches' CPU time decides, so a slow model (or a slower version swapped in) goes back to the
        threads. CPU time, not wall time: on a busy machine a 0.3 ms run can take 40 ms of wall time."""
        return self.config.inline_ms > 0 and self._batch_cpu_s * 1e3 <= self.config.inline_ms

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        model = batch[0].model
        n = sum(r.rows.shape[0] for r in batch)
        started = time.perf_counter()
        max_wait = started - min(r.enqueued for r in batch)
        self._running += 1
        try:
            if self._inline():
                outputs, cpu_s = _predict(model, [r.rows for r in batch])
            else:
                outputs, cpu_s = await loop.run_in_executor(self._executor, _predict, model, [r.rows for r in batch])
        except asyncio.CancelledError:  # shutting down: no caller may wait forever
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(Overloaded("the server is shutting down", retry_after=1.0))
            raise
        except Exception as exc:  # a model failure fails this batch only, with the real reason logged
            log.exception("inference failed for a batch of %d rows", n)
            failed = time.perf_counter()
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(exc)
            waited = sum(started - r.enqueued for r in batch)
            self._observe(model, False, len(batch), waited, len(batch) * (failed - started), waited + len(batch) * (failed - started))
            return
        finally:
            self._running -= 1
        elapsed = time.perf_counter() - started
        per_row = elapsed / n
        self._row_seconds = per_row if not self._row_seconds else 0.8 * self._row_seconds + 0.2 * per_row
        self._batch_cpu_s = cpu_s if not self._batch_cpu_s else 0.8 * self._batch_cpu_s + 0.2 * cpu_s
        offset = 0
        done = time.perf_counter()
        for req in batch:
            k = req.rows.shape[0]
            if not req.future.done():
                req.future.set_result(outputs[offset : offset + k])
            offset += k
        waited = sum(started - r.enqueued for r in batch)  # each request counts its own queue time, and the
        m = len(batch)  # whole batch's compute time (Triton's convention), from queueing to result in total
        self._observe(model, True, m, waited, m * elapsed, waited + m * (done - started))
        if self._on_batch is not None:
            try:
                self._on_batch(model, n, elapsed, max_wait)
            except Exception:
                log.exception("batch observer failed")
