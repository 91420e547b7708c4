"""Train a classifier and write a self-contained run directory that ``export`` turns into a registry version.

A run directory holds::

    model.keras          the trained model (best validation epoch)
    config.json          TrainConfig, every knob, plus what was resolved from it (input shape, parent)
    labels.json          class names, in output order
    label_folders.json   the class-folder name of each label (the parent's, else derived from the label)
    preprocessing.json   inference.metadata.Preprocessing: what serving must do to an image
    dataset.json         name, sha256 fingerprint, split sizes
    history.json         Keras per-epoch metrics (+ training_curves.png)
    evaluation.json      test-set accuracy, per-class report, confusion matrix (+ evaluation_confusion.png)
    heldout.npz          uint8 test images and a sample of training images, for export's gates and calibration
    progress.jsonl       one JSON object per event (start, epoch, done), for job runners to follow
    summary.json         written last: its presence means the run finished

Configuration and data are checked before TensorFlow is imported, so bad input fails in a second.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inference.atomic import atomic_write_bytes, atomic_write_json
from inference.errors import ConfigError
from inference.labels import derive_label_folders
from inference.metadata import Preprocessing
from inference.registry import KERAS_FILE

from .architectures import Architecture, ArchParams, get_architecture
from .config import RunResult, TrainConfig
from .datasets import Dataset, load_dataset, native_shape
from .evaluate import evaluate_predictions
from .evaluation_files import save_evaluation
from .parent import Parent, labels_reference, load_parent
from .plots import curves_png
from .precision import rebuilt, with_precision
from .progress import machine_load, progress_sink
from .run_dir import CURVES_FILE, HELDOUT_FILE, SUMMARY_FILE
from .runfiles import explain_os_error, read_or_explain

log = logging.getLogger(__name__)


def resolve_preprocessing(config: TrainConfig, arch: Architecture, parent: Parent | None) -> Preprocessing:
    """Input size and colour mode from the config, else the parent model, else the dataset's own (raised to
    the architecture's minimum), with the architecture's pixel normalisation."""
    if parent is not None and parent.preprocessing is not None:
        pre = parent.preprocessing
        if config.img_size not in (None, pre.height) or config.channels not in (None, pre.channels):
            raise ConfigError(
                f"the warm-start model takes {pre.height}x{pre.width}x{pre.channels} images; "
                "drop --img-size/--channels or train from scratch"
            )
        return pre
    native = native_shape(config.dataset)
    size = config.img_size or max(native[0] if native else arch.folder_size, arch.min_size)
    channels = config.channels or (native[2] if native else 3)
    if config.weights is not None and config.channels is None:
        channels = 3
    return arch.preprocessing((size, size, channels))


def train(
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    progress_file: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Train ``config`` into ``out_dir`` (see the module docstring for its files); returns the test accuracy
    and timings. ``on_progress`` and ``progress_file`` (default ``out_dir/progress.jsonl``) receive one event
    per epoch."""
    out = Path(out_dir)
    arch = get_architecture(config.arch)
    parent = load_parent(config.init_from)
    spec = resolve_preprocessing(config, arch, parent)
    reference = parent if parent is not None else labels_reference(config.labels_from)
    write_event = _open_run_dir(out, Path(progress_file) if progress_file else out / "progress.jsonl", on_progress)
    t_start = time.perf_counter()
    dataset = load_dataset(
        config.dataset,
        spec,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
        order=reference.order if reference is not None else None,
    )
    if parent is not None and parent.labels is not None and parent.labels != dataset.labels:
        raise ConfigError(
            f"cannot warm-start: the parent model's classes {list(parent.labels)} differ from the dataset's "
            f"{list(dataset.labels)}"
        )
    train_split = dataset.train
    if config.max_train_samples:
        train_split = train_split.sample(config.max_train_samples, config.seed)
    seen: set[str] = set()
    loads = [os.getloadavg()[0]]

    def sink(event: dict[str, Any]) -> None:
        seen.add(event["event"])
        loads.append(os.getloadavg()[0])
        write_event(event)

    log.info(
        "dataset %s: %d train / %d val / %d test images %s, %d classes (loaded in %.1fs)",
        dataset.name,
        len(train_split),
        len(dataset.val),
        len(dataset.test),
        dataset.shape,
        len(dataset.labels),
        time.perf_counter() - t_start,
    )

    tta_flip = resolve_tta_flip(config, dataset, parent)  # before TensorFlow loads: a wrong flag fails at once

    from . import fit
    from .mirror import mirror_averaged

    model, history, train_seconds = _fit(config, spec, dataset, train_split, parent, sink)
    probs = fit.predict(mirror_averaged(model) if tta_flip else model, dataset.test.x, spec)
    evaluation = evaluate_predictions(dataset.test.y, probs, dataset.labels)
    save_model(model, out / KERAS_FILE)
    _write_run(out, config, dataset, spec, history, parent, reference, tta_flip=tta_flip)
    save_evaluation(evaluation, out)
    calib = dataset.train.sample(config.calibration_samples, config.seed + 1)
    np.savez_compressed(
        out / HELDOUT_FILE, x_test=dataset.test.x, y_test=dataset.test.y, x_calib=calib.x, y_calib=calib.y
    )
    summary = _summary(config, evaluation, dataset, history, train_seconds, time.perf_counter() - t_start,
                       int(model.count_params()), stopped_by_budget="time_budget" in seen, loads=loads)
    atomic_write_json(out / SUMMARY_FILE, summary)
    sink({"event": "done", **{k: summary[k] for k in ("test_accuracy", "best_epoch", "train_seconds")}})
    log.info("test accuracy %.4f on %d %s images; trained %d epochs in %.0fs", evaluation.accuracy,
             evaluation.count, dataset.test_source, summary["epochs_run"], train_seconds)
    return RunResult(out, evaluation.accuracy, train_seconds, summary["epochs_run"], summary)


def _open_run_dir(
    out: Path, progress_file: Path, on_progress: Callable[[dict[str, Any]], None] | None
) -> Callable[[dict[str, Any]], None]:
    """Create the run directory and its progress file before any data is read, so that a ``--out`` that cannot
    be written fails at once with one line (it was a traceback, after loading the data); drop an earlier
    run's summary.json there, whose presence would mark this run finished."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / SUMMARY_FILE).unlink(missing_ok=True)
        return progress_sink(progress_file, on_progress)
    except OSError as exc:
        raise explain_os_error(exc, out, "the run directory") from None


def _summary(
    config: TrainConfig,
    evaluation: Any,
    dataset: Dataset,
    history: dict[str, list[float]],
    train_seconds: float,
    total_seconds: float,
    params: int,
    *,
    stopped_by_budget: bool,
    loads: list[float],
) -> dict[str, Any]:
    """What summary.json records about a finished run."""
    val_acc = history.get("val_accuracy", [0.0])
    return {
        "test_accuracy": evaluation.accuracy,
        "test_images": evaluation.count,
        "test_source": dataset.test_source,
        "best_val_accuracy": max(val_acc),
        "best_epoch": int(np.argmax(val_acc)) + 1,
        "epochs_run": len(val_acc),
        "stopped_by": "time budget"
        if stopped_by_budget
        else ("early stopping" if len(val_acc) < config.epochs else "epochs"),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "params": params,
        "machine": machine_load(loads),
        "command": config.command,
    }


def _fit(
    config: TrainConfig,
    spec: Preprocessing,
    dataset: Dataset,
    train_split: Any,
    parent: Parent | None,
    sink: Callable[[dict[str, Any]], None],
) -> tuple[Any, dict[str, list[float]], float]:
    """Build (or warm-start) the model and fit it: the TensorFlow half of :func:`train`."""
    import keras  # TensorFlow loads here, once the inputs are known to be good

    from . import fit

    keras.utils.set_random_seed(config.seed)
    if parent is not None:
        load = lambda p: keras.models.load_model(p, compile=False)  # noqa: E731
        model = read_or_explain(parent.path, load, "warm-start from another model, or train from scratch")
        _check_warm_start(model, spec, len(dataset.labels))
    else:
        from .architectures import build_model

        model = build_model(
            config.arch,
            ArchParams(spec.shape, len(dataset.labels), config.alpha, config.weights, config.dropout),
        )
    flip = flips_keep_labels(config, dataset)
    shift = round(config.shift * min(spec.height, spec.width)) if config.augment else 0
    one_hot = len(dataset.labels) if config.label_smoothing > 0 else 0
    batches = fit.Batches(
        train_split,
        spec,
        config.batch_size,
        seed=config.seed,
        flip=config.augment and flip,
        shift=shift,
        one_hot=one_hot,
    )
    val = fit.Batches(
        dataset.val, spec, max(config.batch_size, 256), seed=config.seed, shuffle=False, one_hot=one_hot
    )
    if config.precision != "float32":
        model = with_precision(model, config.precision)
    fit.compile_model(model, learning_rate=config.learning_rate, label_smoothing=config.label_smoothing)
    sink(
        {
            "event": "start",
            "epochs": config.epochs,
            "train_images": len(train_split),
            "params": int(model.count_params()),
        }
    )
    t_fit = time.perf_counter()
    budget = config.time_budget_minutes * 60 if config.time_budget_minutes else None
    history = fit.fit(
        model,
        batches,
        val,
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        patience=config.patience,
        sink=sink,
        budget_seconds=budget,
    )
    seconds = time.perf_counter() - t_fit
    if config.precision != "float32":  # evaluated, saved and exported in float32
        model = with_precision(model, "float32")
    return model, history, seconds


def flips_keep_labels(config: TrainConfig, dataset: Dataset) -> bool:
    """Whether a mirror image keeps its label: the config's ``flip`` when set, else the dataset's own."""
    return dataset.flip_invariant if config.flip is None else config.flip


def resolve_tta_flip(config: TrainConfig, dataset: Dataset, parent: Parent | None) -> bool:
    """Whether test predictions average each image with its mirror image: asked for, or inherited from a
    warm-start parent; refused where a mirror image may change the label (digits, or ``flip=False``)."""
    wanted = config.tta_flip or (parent is not None and parent.tta_flip)
    if wanted and not flips_keep_labels(config, dataset):
        raise ConfigError(f"--tta-flip needs labels that survive a mirror image; the labels of {dataset.name} may not")
    return wanted


def save_model(model: Any, path: Path) -> Path:
    """Save weights and architecture without the optimizer state (a warm start recompiles anyway): the
    .keras file is a third of the size, small enough to ship beside the ONNX files."""
    # Not keras.models.clone_model: it recompiles the clone when the model is compiled, optimizer included.
    rebuilt(model).save(path)
    return path


def _check_warm_start(model: Any, spec: Preprocessing, classes: int) -> None:
    if tuple(model.input_shape[1:]) != spec.shape:
        raise ConfigError(
            f"the warm-start model takes input {list(model.input_shape[1:])}, not {list(spec.shape)}"
        )
    if model.output_shape[-1] != classes:
        raise ConfigError(
            f"the warm-start model has {model.output_shape[-1]} classes; the dataset has {classes}"
        )


def _write_run(
    out: Path,
    config: TrainConfig,
    dataset: Dataset,
    spec: Preprocessing,
    history: dict[str, list[float]],
    parent: Parent | None,
    reference: Parent | None,
    *,
    tta_flip: bool,
) -> None:
    order = reference.order if reference is not None else None
    folders = order.folders if order is not None and order.labels == dataset.labels else None
    resolved = {
        "input_shape": list(spec.shape),
        "parent": parent.ref if parent else None,
        "architecture": (parent.architecture if parent else None) or config.arch,
        "tta_flip": tta_flip,
    }
    atomic_write_json(out / "config.json", {**config.to_dict(), "resolved": resolved})
    atomic_write_json(out / "labels.json", list(dataset.labels))
    atomic_write_json(out / "label_folders.json", list(folders or derive_label_folders(dataset.labels)))
    atomic_write_json(out / "preprocessing.json", dataclasses.asdict(spec))
    atomic_write_json(out / "dataset.json", dataset.info())
    atomic_write_json(out / "history.json", history)
    atomic_write_bytes(out / CURVES_FILE, curves_png(history, f"{config.arch} on {dataset.name}"))
