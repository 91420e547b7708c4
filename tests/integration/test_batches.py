"""training.fit.Batches: prepared by loader threads (so Keras turns tf.data autotuning off: its iterator no longer
stalls up to ~20 s at each epoch end), and still reproducible for a seed whichever thread prepares a batch."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras", reason="needs the train extra")

from inference.metadata import Preprocessing  # noqa: E402
from training.datasets import Split  # noqa: E402
from training.fit import LOADER_QUEUE, LOADER_THREADS, Batches  # noqa: E402

SPEC = Preprocessing(height=8, width=8, channels=1, scale=1 / 255, mean=(0.0,), std=(1.0,))


def _split(n: int = 64) -> Split:
    rng = np.random.default_rng(1)
    return Split(rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8), rng.integers(0, 3, n))


def _batches(**kw: object) -> Batches:
    return Batches(_split(), SPEC, 16, seed=7, flip=True, shift=2, **kw)  # type: ignore[arg-type]


def test_batches_use_loader_threads() -> None:
    batches = _batches()
    assert LOADER_THREADS > 1 and batches.workers == LOADER_THREADS  # > 1: Keras' enqueuer, autotune off
    assert batches.max_queue_size == LOADER_QUEUE  # bounded read-ahead (big images: ~77 MB per batch)


def test_augmented_batches_do_not_depend_on_the_order_they_are_prepared_in() -> None:
    a, b = _batches(), _batches()
    forward = [a[i][0] for i in range(len(a))]
    backward = {i: b[i][0] for i in reversed(range(len(b)))}
    assert all(np.array_equal(forward[i], backward[i]) for i in range(len(a)))
    a.on_epoch_end()
    b.on_epoch_end()
    assert np.array_equal(a[2][0], b[2][0]) and not np.array_equal(a[2][0], forward[2])  # a new epoch, new draws


def test_shift_moves_each_image_by_its_own_offset_with_edges_replicated() -> None:
    from training.fit import augment

    x = _split(32).x
    shifted = augment(x, np.random.default_rng(3), flip=False, shift=2)
    offsets = np.random.default_rng(3).integers(0, 5, size=(len(x), 2))  # the same draws augment makes
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge")
    expected = np.stack([padded[i, dy : dy + 8, dx : dx + 8] for i, (dy, dx) in enumerate(offsets)])
    assert shifted.dtype == np.uint8 and np.array_equal(shifted, expected)
    assert not np.array_equal(shifted, x)  # some offsets are not (2, 2), the identity
