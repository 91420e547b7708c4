from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from inference.batcher import BatchingConfig, MicroBatcher
from inference.errors import ConfigError, Overloaded


class SlowDouble:
    """Doubles its input after a delay; records batch sizes."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.sizes: list[int] = []
        self.lock = threading.Lock()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.sizes.append(batch.shape[0])
        time.sleep(self.delay)
        return batch * 2


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_lone_request_runs_alone_without_waiting() -> None:
    async def main() -> float:
        b = MicroBatcher(BatchingConfig(max_batch_size=8, lanes=1))
        b.start()
        model = SlowDouble()
        t0 = time.perf_counter()
        out = await b.submit(model, np.ones((1, 2), np.float32))
        elapsed = time.perf_counter() - t0
        await b.close()
        assert (out == 2).all() and model.sizes == [1]
        return elapsed

    assert run(main()) < 0.5


def test_requests_queued_while_busy_form_one_batch_and_results_route_back() -> None:
    async def main() -> None:
        b = MicroBatcher(BatchingConfig(max_batch_size=16, lanes=1))
        b.start()
        model = SlowDouble(delay=0.05)
        rows = [np.full((1, 2), i, np.float32) for i in range(10)]
        first = asyncio.create_task(b.submit(model, rows[0]))
        await asyncio.sleep(0.01)  # the lane is now busy with the first request alone
        outs = [await first, *await asyncio.gather(*(b.submit(model, r) for r in rows[1:]))]
        await b.close()
        for i, out in enumerate(outs):
            assert (out == 2 * i).all()
        assert model.sizes == [1, 9]

    run(main())


def test_max_batch_size_is_respected_with_multi_row_requests() -> None:
    async def main() -> None:
        b = MicroBatcher(BatchingConfig(max_batch_size=4, lanes=1, max_queue=100))
        b.start()
        model = SlowDouble(delay=0.01)
        outs = await asyncio.gather(*(b.submit(model, np.full((3, 1), i, np.float32)) for i in range(6)))
        await b.close()
        assert max(model.sizes) <= 4
        assert [o.shape for o in outs] == [(3, 1)] * 6
        assert all((o == 2 * i).all() for i, o in enumerate(outs))

    run(main())


def test_full_queue_sheds_with_overloaded() -> None:
    async def main() -> None:
        b = MicroBatcher(BatchingConfig(max_batch_size=1, lanes=1, max_queue=2))
        b.start()
        model = SlowDouble(delay=0.1)
        results = await asyncio.gather(
            *(b.submit(model, np.ones((1, 1), np.float32)) for _ in range(8)), return_exceptions=True
        )
        await b.close()
        shed = [r for r in results if isinstance(r, Overloaded)]
        ok = [r for r in results if isinstance(r, np.ndarray)]
        assert len(shed) >= 4 and len(ok) >= 2 and len(shed) + len(ok) == 8
        assert all(e.retry_after >= 1 for e in shed)

    run(main())


def test_request_larger_than_the_queue_runs_when_the_queue_is_empty() -> None:
    """Otherwise a /predict_batch of more images than max_queue would be refused forever, not just under load."""

    async def main() -> None:
        b = MicroBatcher(BatchingConfig(max_batch_size=4, lanes=1, max_queue=2))
        b.start()
        model = SlowDouble(delay=0.05)
        first = asyncio.create_task(b.submit(model, np.ones((5, 1), np.float32)))
        await asyncio.sleep(0.01)  # running, the queue is empty again
        second = asyncio.create_task(b.submit(model, np.ones((3, 1), np.float32)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):  # the queue holds 3 rows > 2: the next one is shed
            await b.submit(model, np.ones((1, 1), np.float32))
        assert (await first).shape == (5, 1) and (await second).shape == (3, 1)
        await b.close()

    run(main())


def test_deadline_passed_in_queue_is_shed() -> None:
    async def main() -> None:
        b = MicroBatcher(BatchingConfig(max_batch_size=1, lanes=1, max_queue=10))
        b.start()
        model = SlowDouble(delay=0.2)
        results = await asyncio.gather(
            *(b.submit(model, np.ones((1, 1), np.float32), timeout_s=0.1) for _ in range(3)), return_exceptions=True
        )
        await b.close()
        assert isinstance(results[0], np.ndarray)
        assert any(isinstance(r, Overloaded) for r in results[1:])

    run(main())


def test_requests_for_different_models_are_not_mixed() -> None:
    async def main() -> None:
        b = MicroBatcher(BatchingConfig(max_batch_size=16, lanes=1))
        b.start()
        old, new = SlowDouble(delay=0.05), SlowDouble(delay=0.05)
        await asyncio.gather(*(b.submit(old if i % 2 else new, np.ones((1, 1), np.float32)) for i in range(10)))
        await b.close()
        assert sum(old.sizes) == 5 and sum(new.sizes) == 5

    run(main())


def test_model_error_fails_only_that_batch() -> None:
    class Broken:
        def predict(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("boom")

    async def main() -> None:
        b = MicroBatcher(BatchingConfig(lanes=1))
        b.start()
        with pytest.raises(RuntimeError):
            await b.submit(Broken(), np.ones((1, 1), np.float32))
        out = await b.submit(SlowDouble(), np.ones((1, 1), np.float32))
        await b.close()
        assert (out == 2).all()

    run(main())


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        BatchingConfig(max_batch_size=0)
    with pytest.raises(ConfigError):
        BatchingConfig(lanes=0)


def test_close_fails_running_and_queued_requests_instead_of_hanging() -> None:
    async def main() -> None:
        b = MicroBatcher(BatchingConfig(max_batch_size=1, lanes=1))
        b.start()
        model = SlowDouble(delay=0.3)
        tasks = [asyncio.create_task(b.submit(model, np.ones((1, 1), np.float32))) for _ in range(3)]
        await asyncio.sleep(0.05)
        await b.close()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=2)
        assert all(isinstance(r, Overloaded) for r in results)

    run(main())


def test_outcome_observer_counts_every_request_once() -> None:
    """The statistics hook: successes reported per batch with per-request queue/compute sums, refusals and
    deadline misses as failures."""
    outcomes: list[tuple[bool, int, float, float, float]] = []

    async def main() -> None:
        b = MicroBatcher(
            BatchingConfig(max_batch_size=8, lanes=1, max_queue=3),
            on_request=lambda m, ok, n, q, c, t: outcomes.append((ok, n, q, c, t)),
        )
        b.start()
        model = SlowDouble(delay=0.05)
        first = asyncio.create_task(b.submit(model, np.ones((1, 2), np.float32)))
        await asyncio.sleep(0.01)  # the lane is busy with `first`: the next three queue up into one batch
        queued = [asyncio.create_task(b.submit(model, np.ones((1, 2), np.float32))) for _ in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):  # the queue holds 3 rows already
            await b.submit(model, np.ones((1, 2), np.float32))
        await asyncio.gather(first, *queued)
        await b.close()

    run(main())
    ok = [o for o in outcomes if o[0]]
    failed = [o for o in outcomes if not o[0]]
    assert sum(o[1] for o in ok) == 4 and [o[1] for o in failed] == [1]
    assert len(ok) == 2  # `first` alone, then the three queued ones as one batch: one report per batch
    batch3 = next(o for o in ok if o[1] == 3)
    assert batch3[3] >= 3 * 0.04 and batch3[2] > 0  # compute counted once per request; they all waited
    assert batch3[4] >= batch3[2] + batch3[3] - 1e-6


class ThreadRecorder(SlowDouble):
    """SlowDouble that also records which thread ran each batch."""

    def __init__(self, delay: float = 0.0):
        super().__init__(delay)
        self.threads: list[int] = []

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.threads.append(threading.get_ident())
        cpu = time.thread_time()
        while time.thread_time() - cpu < self.delay:  # CPU, not sleep: the batcher measures a run's CPU time
            pass
        return batch * 2


def test_cheap_batches_run_on_the_event_loop_and_slow_ones_in_a_lane_thread() -> None:
    async def main(model: ThreadRecorder, inline_ms: float) -> int:
        b = MicroBatcher(BatchingConfig(max_batch_size=8, lanes=1, inline_ms=inline_ms))
        b.start()
        for i in range(4):
            out = await b.submit(model, np.full((1, 2), i, np.float32))
            assert (out == 2 * i).all()
        await b.close()
        return threading.get_ident()

    cheap = ThreadRecorder()
    loop_thread = run(main(cheap, inline_ms=50.0))
    assert cheap.threads == [loop_thread] * 4
    slow = ThreadRecorder(delay=0.03)  # the first batch runs inline and measures 30 ms of CPU > 5 ms: threads after
    loop_thread = run(main(slow, inline_ms=5.0))
    assert slow.threads[0] == loop_thread and loop_thread not in slow.threads[1:]
    never = ThreadRecorder()
    loop_thread = run(main(never, inline_ms=0.0))
    assert loop_thread not in never.threads


def test_inline_applies_to_a_single_lane_only() -> None:
    from serving.settings import ServeSettings

    assert ServeSettings(lanes=1, workers=2, inline_infer_ms=1.5).batching().inline_ms == 1.5
    assert ServeSettings(lanes=2, workers=1, inline_infer_ms=1.0).batching().inline_ms == 0.0
    assert ServeSettings(lanes=1, workers=1, inline_infer_ms=0).batching().inline_ms == 0.0
