"""The Keras half of training: batches (augmented uint8 -> ``inference.preprocess.normalize``), callbacks,
``fit``. Imported by ``training.train`` only once the configuration and the data are known to be good."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from inference.metadata import Preprocessing
from inference.preprocess import normalize

from . import progress
from .datasets import Split

ProgressSink = Callable[[dict[str, Any]], None]


def augment(x: np.ndarray, rng: np.random.Generator, *, flip: bool, shift: int) -> np.ndarray:
    """Random horizontal flips and translations by up to ``shift`` pixels (edges replicated), on uint8
    images, so the normalisation that follows is exactly serving's."""
    x = x.copy()
    if flip:
        mirror = rng.random(len(x)) < 0.5
        x[mirror] = x[mirror, :, ::-1]
    if shift > 0:
        h, w = x.shape[1:3]
        padded = np.pad(x, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
        offsets = rng.integers(0, 2 * shift + 1, size=(len(x), 2))
        for i, (dy, dx) in enumerate(offsets):
            x[i] = padded[i, dy : dy + h, dx : dx + w]
    return x


# Two loader threads (Keras' OrderedEnqueuer) instead of Keras' default of one: with one, Keras feeds the batches
# through tf.data with autotuning on, and destroying that iterator at the end of every epoch (training, and again
# for validation) waited for tf.data's autotune thread to wake from a sleep that grows to ~20 s. Measured on the
# 2-vCPU AVX2 machine (small-cnn, 60 steps of 128, 5 processes each): 2 of 5 stalled 7.9-8.1 s after the last
# step, whole 54k-image epochs took 135-151 s instead of ~100 s, with a third of the CPU idle; with two threads
# Keras turns autotuning off: 0 of 5 stalled (~110 ms to stop the threads), 203-251 ms per step.
LOADER_THREADS = 2
# Batches prepared ahead: enough to keep the model fed; Keras' default (10) would hold ~770 MB of float32 for
# 128-image batches of 224x224x3 (MobileNetV2).
LOADER_QUEUE = 2


class Batches(keras.utils.PyDataset):
    """Shuffled mini-batches of a uint8 split, normalised on the fly (memory stays at uint8 size), prepared by
    ``LOADER_THREADS`` threads. Each batch's augmentation draws from its own generator, seeded by (seed, epoch,
    batch), so a seeded run is reproducible whichever thread prepares which batch."""

    def __init__(
        self,
        split: Split,
        spec: Preprocessing,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool = True,
        flip: bool = False,
        shift: int = 0,
        one_hot: int = 0,
    ):
        super().__init__(workers=LOADER_THREADS, max_queue_size=LOADER_QUEUE)
        self.split, self.spec, self.batch_size, self.one_hot = split, spec, batch_size, one_hot
        self.shuffle, self.flip, self.shift = shuffle, flip, shift
        self.seed, self.epoch = seed, 0
        self.rng = np.random.default_rng(seed)  # the shuffles (one per epoch, between epochs)
        self.order = self.rng.permutation(len(split)) if shuffle else np.arange(len(split))

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.sort(self.order[index * self.batch_size : (index + 1) * self.batch_size])
        x = self.split.x[idx]
        if self.flip or self.shift:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            x = augment(x, rng, flip=self.flip, shift=self.shift)
        y = self.split.y[idx]
        if self.one_hot:  # label smoothing needs one-hot targets
            y = np.eye(self.one_hot, dtype=np.float32)[y]
        return normalize(x, self.spec), y

    def on_epoch_end(self) -> None:  # Keras calls it once the epoch's loader threads have stopped
        self.epoch += 1
        if self.shuffle:
            self.order = self.rng.permutation(len(self.split))


class Progress(keras.callbacks.Callback):
    """One event per epoch to ``sink`` (log line, JSON-lines file, an admin job's status)."""

    def __init__(self, epochs: int, sink: ProgressSink):
        super().__init__()
        self.epochs, self.sink = epochs, sink
        self.start = self.epoch_start = time.perf_counter()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        self.sink(
            {
                "event": "epoch",
                "epoch": epoch + 1,
                "epochs": self.epochs,
                "metrics": {k: round(float(v), 6) for k, v in (logs or {}).items()},
                "learning_rate": round(float(self.model.optimizer.learning_rate), 8),
                "epoch_seconds": round(now - self.epoch_start, 2),
                "elapsed_seconds": round(now - self.start, 2),
            }
        )


class BatchBar(keras.callbacks.Callback):
    """A rich progress bar per epoch on a terminal: batches done, running loss/accuracy, elapsed and ETA;
    the finished epoch's line stays with its validation figures."""

    def __init__(self, epochs: int, steps: int):
        super().__init__()
        from rich.progress import Progress, TextColumn

        self.epochs, self.steps, self.task = epochs, steps, None
        self.bar = Progress(
            *progress.bar_columns(TextColumn("{task.fields[metrics]}")),
            console=progress.console(),
        )

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.bar.start()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.task = self.bar.add_task(f"epoch {epoch + 1}/{self.epochs}", total=self.steps, metrics="")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.bar.update(self.task, completed=batch + 1, metrics=_fmt(logs))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.bar.update(self.task, completed=self.steps, metrics=_fmt(logs))

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.bar.stop()


def _fmt(logs: dict[str, Any] | None) -> str:
    names = (("loss", "loss"), ("accuracy", "acc"), ("val_loss", "val_loss"), ("val_accuracy", "val_acc"))
    return "  ".join(f"{short} {float(logs[k]):.4f}" for k, short in names if logs and k in logs)


class CosineSchedule(keras.callbacks.Callback):
    """Cosine learning-rate decay over the run's *progress*: steps done / steps planned, or, with a time
    budget, the larger of that and seconds used / budget. On a CPU shared with other jobs an epoch can take
    twice as long as planned; the learning rate then still anneals by the end of the budget instead of being
    cut off half-way (a step-based schedule stopped at 70 % leaves the rate at a quarter of its peak).
    Training stops after the epoch past which another would overrun the budget; the best epoch is kept."""

    def __init__(
        self,
        peak: float,
        total_steps: int,
        sink: ProgressSink,
        budget_seconds: float | None = None,
        floor: float = 0.01,
    ):
        super().__init__()
        self.peak, self.total_steps, self.sink, self.budget, self.floor = (
            peak,
            max(1, total_steps),
            sink,
            budget_seconds,
            floor,
        )
        self.step, self.start, self.epoch_start = 0, time.perf_counter(), time.perf_counter()
        self.last_epoch_seconds = 0.0

    def progress(self) -> float:
        done = self.step / self.total_steps
        if self.budget:
            # aim to finish annealing at the end of the last epoch that fits
            usable = (
                max(self.budget - self.last_epoch_seconds, 1e-9) if self.last_epoch_seconds else self.budget
            )
            done = max(done, (time.perf_counter() - self.start) / usable)
        return min(1.0, done)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        factor = self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * self.progress()))
        self.model.optimizer.learning_rate = self.peak * factor
        self.step += 1

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.perf_counter()
        self.last_epoch_seconds = now - self.epoch_start
        if (
            self.budget
            and (now - self.start) + self.last_epoch_seconds > self.budget
            and self.step < self.total_steps
        ):
            self.model.stop_training = True
            self.sink({"event": "time_budget", "epoch": epoch + 1, "budget_seconds": self.budget})


class BestEpoch(keras.callbacks.EarlyStopping):
    """Early stopping on validation accuracy with ties broken by validation loss. A small upload's validation
    set (6 images) reaches 100 % after one epoch; plain EarlyStopping then restored that barely trained epoch
    (val. loss 0.68 vs 0.38 two epochs later), whose INT8 copy flipped 2 of 6 test answers and failed the
    export's accuracy gate. The loss term (1e-6 x loss) is below one image's worth of accuracy for any
    validation set under 100k images, so it only decides ties."""

    def get_monitor_value(self, logs: dict[str, Any] | None) -> float | None:
        acc = super().get_monitor_value(logs)
        loss = (logs or {}).get("val_loss")
        return None if acc is None else float(acc) - (1e-6 * float(loss) if loss is not None else 0.0)


def compile_model(model: keras.Model, *, learning_rate: float, label_smoothing: float) -> None:
    """Adam (its rate set per batch by ``CosineSchedule``). With label smoothing the batches carry one-hot
    targets (Keras' sparse loss has no smoothing); both losses are built-ins, so model.keras loads anywhere."""
    if label_smoothing > 0:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    # XLA (jit_compile) is slower for these small CNNs on CPU (measured: 2-3x), so it stays off.
    model.compile(keras.optimizers.Adam(learning_rate), loss=loss, metrics=["accuracy"], jit_compile=False)


def fit(
    model: keras.Model,
    train: Batches,
    val: Batches,
    *,
    epochs: int,
    learning_rate: float,
    patience: int,
    sink: ProgressSink,
    budget_seconds: float | None = None,
) -> dict[str, list[float]]:
    """Fit with early stopping on validation accuracy (best weights restored, also when the time budget
    stops the run); returns the history."""
    callbacks = [
        Progress(epochs, sink),
        CosineSchedule(learning_rate, epochs * len(train), sink, budget_seconds),
        BestEpoch(monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True),
    ]
    if progress.interactive():
        callbacks.append(BatchBar(epochs, len(train)))
    history = model.fit(train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=0)
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def predict(model: keras.Model, x: np.ndarray, spec: Preprocessing, batch_size: int = 256) -> np.ndarray:
    """Probabilities for uint8 images, normalised the serving way, in batches (bounded memory)."""
    out = [
        np.asarray(model(normalize(x[i : i + batch_size], spec), training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)
