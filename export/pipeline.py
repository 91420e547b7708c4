"""Turn a finished training run into a registered version: ONNX fp32 + INT8, two gates, one ModelCard.

Gates (the export fails with a clear message and registers nothing when one fails):
  * parity: ONNX fp32 vs Keras on held-out images, max |probability difference| <= ``parity_tolerance``;
  * accuracy: INT8 top-1 accuracy on the test set at most ``max_int8_drop`` below fp32.

The version also gets ``reference.json``: the INT8 model's predictions and simple image statistics on the held-out
images, the baseline of the service's drift signals (export/reference.py).

Everything is built inside ``Registry.stage``: a crash or a failed gate removes the staged directory, so the
registry never shows a half-written version.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ImgServeError
from inference.metadata import ModelCard, Preprocessing, TensorSpec
from inference.preprocess import normalize
from inference.registry import KERAS_FILE, VARIANT_FILES, Registry, check_name
from training import progress as steps
from training.evaluate import Evaluation, evaluate_predictions
from training.parent import run_tta_flip
from training.run_dir import load_run
from training.runfiles import read_or_explain

from .quantize import QuantizationConfig
from .reference import reference_of

log = logging.getLogger(__name__)


class ExportGateError(ImgServeError):
    """A quality gate failed; nothing was registered."""

    http_status = 422
    grpc_code = "FAILED_PRECONDITION"
    error_type = "export_gate_failed"


@dataclass(frozen=True)
class ExportOptions:
    name: str
    promote: bool = False
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    parity_images: int = 64
    parity_tolerance: float = 1e-4
    max_int8_drop: float = 0.01  # absolute top-1 accuracy (0.01 = 1 point)
    include_keras: bool = True
    command: str = ""  # the export command line, appended to the training command in metadata


@dataclass(frozen=True)
class Measured:
    """What the export measured, before anything is registered."""

    parity_max_abs_diff: float
    fp32: Evaluation
    int8: Evaluation
    seconds: dict[str, float]


def export_run(run_dir: str | os.PathLike[str], registry: Registry, options: ExportOptions) -> ModelCard:
    """Convert, quantize, gate and register the run in ``run_dir``; returns the registered card."""
    check_name(options.name)
    with registry.stage(options.name) as staged:
        card = registry.register(staged, stage_run(run_dir, staged, options))
    if options.promote and registry.aliases(options.name).get("production") != card.version:
        registry.promote(options.name, card.version, reason="export --promote")
    acc = card.metrics["accuracy"]
    log.info("registered %s v%d: fp32 %.4f, int8 %.4f", card.name, card.version, acc["fp32"], acc["int8"])
    return card


def stage_run(run_dir: str | os.PathLike[str], staged: Path, options: ExportOptions) -> ModelCard:
    """Everything of a version but its number, built into ``staged`` (from ``Registry.stage``): ONNX files,
    model.keras, MODEL_CARD.md and plots. Returns the card to register; a caller may add files (the
    promotion decision) before registering."""
    from training.evaluation_files import confusion_png

    from .card import write_artifacts

    run = load_run(run_dir)
    held = read_or_explain(run["heldout_path"], lambda p: dict(np.load(p)))  # every array read now
    if not {"x_test", "y_test", "x_calib"} <= held.keys():
        raise ImgServeError(f"run directory {run_dir}: {run['heldout_path'].name} lacks test or calibration images")
    spec: Preprocessing = run["preprocessing"]

    import keras  # TensorFlow loads only once the run is known to be complete

    model = read_or_explain(run["keras_path"], lambda p: keras.models.load_model(p, compile=False))
    measured = build_version(
        _served_model(model, run),
        staged,
        spec=spec,
        labels=run["labels"],
        x_test=held["x_test"],
        y_test=held["y_test"],
        x_calib=held["x_calib"],
        options=options,
    )
    if options.include_keras:  # re-saved from the uncompiled model: no optimizer state, a third the size
        with steps.step("save model.keras"):
            model.save(staged / KERAS_FILE)
    card = make_card(run, spec, measured, options)
    with steps.step("model card and plots"):
        write_artifacts(staged, card, confusion_png(measured.fp32), run.get("history") or {})
    log.info(
        "staged %s: fp32 %.4f, int8 %.4f, parity %.2e",
        card.name,
        measured.fp32.accuracy,
        measured.int8.accuracy,
        measured.parity_max_abs_diff,
    )
    return card


def _served_model(model: Any, run: dict[str, Any]) -> Any:
    """What the ONNX files compute: the trained model, or it wrapped in flip averaging."""
    if not run_tta_flip(run["config"]):
        return model
    from training.mirror import mirror_averaged

    return mirror_averaged(model)


def build_version(
    model: Any,
    out: Path,
    *,
    spec: Preprocessing,
    labels: tuple[str, ...],
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_calib: np.ndarray,
    options: ExportOptions,
) -> Measured:
    """Write model.onnx and model.int8.onnx into ``out`` and check both gates. Reused by the benchmark,
    which builds random-weight models the same way."""
    from . import convert
    from .quantize import quantize

    seconds: dict[str, float] = {}
    with steps.step("convert to ONNX fp32"), tempfile.TemporaryDirectory(prefix="imgserve-export-") as tmp:
        t0 = time.perf_counter()
        saved = convert.to_saved_model(model, Path(tmp) / "saved_model")
        fp32 = convert.to_onnx(saved, out / VARIANT_FILES["fp32"])
        seconds["convert"] = round(time.perf_counter() - t0, 2)
    x_parity = normalize(x_test[: options.parity_images], spec)
    with steps.step(f"parity gate ({len(x_parity)} images)"):
        diff = convert.max_abs_diff(model, fp32, x_parity)
    if not diff <= options.parity_tolerance:
        raise ExportGateError(
            f"parity gate failed: ONNX fp32 differs from Keras by up to {diff:.2e} on {len(x_parity)} held-out "
            f"images (tolerance {options.parity_tolerance:.0e}); nothing was registered"
        )
    x_all = normalize(x_test, spec)
    with steps.step(f"evaluate fp32 on {len(x_all)} test images"):
        fp32_eval = evaluate_predictions(y_test, convert.onnx_predict(fp32, x_all), labels)

    t0 = time.perf_counter()
    with steps.step(f"quantize to INT8 ({options.quantization.format}, {len(x_calib)} calibration images)"):
        int8 = quantize(fp32, normalize(x_calib, spec), options.quantization, out / VARIANT_FILES["int8"])
    seconds["quantize"] = round(time.perf_counter() - t0, 2)
    with steps.step(f"evaluate INT8 on {len(x_all)} test images"):
        int8_probabilities = convert.onnx_predict(int8, x_all)
        int8_eval = evaluate_predictions(y_test, int8_probabilities, labels)
    drop = fp32_eval.accuracy - int8_eval.accuracy
    # One image of slack: on a small upload's test set (4 images: 25 points each) a gate finer than one image
    # only says "no answer may differ"; on Fashion-MNIST's 10k images it changes nothing.
    allowed = max(options.max_int8_drop, 1 / max(1, fp32_eval.count))
    if drop > allowed + 1e-9:
        raise ExportGateError(
            f"accuracy gate failed: INT8 top-1 accuracy {int8_eval.accuracy:.2%} is {100 * drop:.2f} points below "
            f"fp32 {fp32_eval.accuracy:.2%} on {fp32_eval.count} test images (allowed: "
            f"{100 * allowed:.2f}); try another --quantization preset or more --calibration-size; "
            "nothing was registered"
        )
    # The drift baseline (reference.json): what the served INT8 variant predicts on the same held-out images.
    reference_of(int8_probabilities, x_test, labels, out, source=f"held-out test split ({len(x_test)} images)")
    return Measured(diff, fp32_eval, int8_eval, seconds)


def make_card(
    run: dict[str, Any], spec: Preprocessing, measured: Measured, options: ExportOptions
) -> ModelCard:
    """The metadata.json content: everything needed to serve, compare and reproduce this version."""
    import onnxruntime
    import tf2onnx

    from .convert import BATCH_DIM, INPUT_NAME, OPSET, OUTPUT_NAME

    config, summary = run["config"], run["summary"]
    labels = run["labels"]
    parent = (config.get("resolved") or {}).get("parent") or {}
    train_cmd = config.get("command") or ""
    command = " && ".join(c for c in (train_cmd, options.command) if c)
    return ModelCard(
        name=options.name,
        version=0,  # allocated by Registry.register
        labels=labels,
        preprocessing=spec,
        inputs=(TensorSpec(INPUT_NAME, "float32", (-1, *spec.shape)),),
        outputs=(TensorSpec(OUTPUT_NAME, "float32", (-1, len(labels))),),
        architecture=(config.get("resolved") or {}).get("architecture") or config["arch"],
        training={
            "config": {k: v for k, v in config.items() if k != "resolved"},
            "parent": parent or None,
            **{
                k: summary[k]
                for k in (
                    "epochs_run",
                    "stopped_by",
                    "best_epoch",
                    "best_val_accuracy",
                    "train_seconds",
                    "total_seconds",
                    "params",
                    "machine",
                )
                if k in summary
            },
            "loadavg_1m_during_training": run.get("load_during_training"),
        },
        dataset=run["dataset"],
        metrics={
            "accuracy": {
                "fp32": measured.fp32.accuracy,
                "int8": measured.int8.accuracy,
                "keras": summary.get("test_accuracy"),
            },
            "evaluated_on": {
                "split": "test",
                "source": summary.get("test_source"),
                "images": measured.fp32.count,
            },
            "per_class": {"fp32": measured.fp32.per_class(), "int8": measured.int8.per_class()},
            "macro_f1": {
                "fp32": round(measured.fp32.report["macro avg"]["f1-score"], 4),
                "int8": round(measured.int8.report["macro avg"]["f1-score"], 4),
            },
            "confusion_matrix": {"fp32": measured.fp32.confusion, "int8": measured.int8.confusion},
        },
        export={
            "outputs_probabilities": True,
            "parity_max_abs_diff": measured.parity_max_abs_diff,
            "parity_images": options.parity_images,
            "parity_tolerance": options.parity_tolerance,
            "max_int8_drop": options.max_int8_drop,
            "quantization": options.quantization.to_dict(),
            "opset": OPSET,
            "batch_dim": BATCH_DIM,
            "tf2onnx": tf2onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "seconds": measured.seconds,
            "keras_file": options.include_keras,
            "tta_flip": run_tta_flip(run["config"]),
        },
        parent_version=parent.get("version") if parent.get("name") == options.name else None,
        command=command,
        label_folders=tuple(run.get("label_folders") or ()),
    )
