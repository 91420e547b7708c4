"""Random-weight models exported and registered through the real export path, for speed measurements.

The load benchmark needs a compute-bound model (MobileNetV2 alpha 1.0 at 224x224x3) served from a registry;
nothing is downloaded: the weights are random and the calibration images are generated. Accuracy numbers of
such a version mean nothing, so its metadata says ``"synthetic": true`` and the INT8 accuracy gate is off
(the parity gate still applies).
"""

from __future__ import annotations

import logging
import shlex
import sys
from typing import Any

import numpy as np

from inference.metadata import ModelCard, Preprocessing, TensorSpec
from inference.preprocess import normalize
from inference.registry import KERAS_FILE, Registry

from .pipeline import ExportOptions, Measured, build_version
from .quantize import QuantizationConfig

log = logging.getLogger(__name__)


def generated_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Smooth random uint8 images (low-frequency noise upsampled, plus grain): closer to photo statistics
    than white noise, so calibration ranges look like real ones."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w, c = shape
    out = np.empty((n, h, w, c), dtype=np.uint8)
    mode = "L" if c == 1 else "RGB"
    for i in range(n):
        small = rng.integers(0, 256, size=(8, 8, c), dtype=np.uint8)
        image = Image.fromarray(small[:, :, 0] if c == 1 else small, mode).resize(
            (w, h), Image.Resampling.BICUBIC
        )
        grain = rng.normal(0, 12, size=(h, w, c))
        out[i] = np.clip(np.asarray(image, dtype=np.float32).reshape(h, w, c) + grain, 0, 255).astype(
            np.uint8
        )
    return out


def settle_batchnorm(model: Any, x: np.ndarray) -> None:
    """Set every batch-norm layer's moving statistics to those of ``x`` (one forward pass with momentum 0).
    A freshly initialised MobileNetV2 otherwise outputs the same uniform distribution for every image, and
    INT8 calibration of such dead activations says nothing about a real model's."""
    import keras

    def walk(layer: Any) -> list[Any]:
        inner = getattr(layer, "layers", [])
        return [layer] + [sub for child in inner for sub in walk(child)]

    norms = [layer for layer in walk(model) if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(norms, saved, strict=True):
        layer.momentum = momentum


def register_random_model(
    registry: Registry,
    name: str = "mobilenetv2",
    *,
    arch: str = "mobilenetv2",
    img_size: int = 224,
    channels: int = 3,
    alpha: float = 1.0,
    classes: int = 1000,
    calibration_size: int = 64,
    seed: int = 0,
    quantization: QuantizationConfig | None = None,
    promote: bool = False,
    keep_keras: bool = False,
) -> ModelCard:
    """Build ``arch`` with random weights, export fp32 + INT8 through ``build_version`` and register it."""
    from training.train import save_model

    model, spec = _random_model(arch, (img_size, img_size, channels), classes, alpha, seed)
    quantization = (quantization or QuantizationConfig()).replace(calibration_size=calibration_size)
    options = ExportOptions(
        name=name,
        quantization=quantization,
        max_int8_drop=1.0,
        include_keras=keep_keras,
        command=shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
    )
    n_test = options.parity_images  # accuracy means nothing here: the test images only feed the parity gate
    images = generated_images(calibration_size + n_test, spec.shape, seed)
    labels = tuple(f"class_{i:04d}" for i in range(classes))
    with registry.stage(name) as staged:
        measured = build_version(
            model,
            staged,
            spec=spec,
            labels=labels,
            x_test=images[:n_test],
            y_test=np.zeros(n_test, np.int64),
            x_calib=images[n_test:],
            options=options,
        )
        if keep_keras:
            save_model(model, staged / KERAS_FILE)
        card = _synthetic_card(
            model,
            options,
            measured,
            spec=spec,
            labels=labels,
            arch=arch,
            alpha=alpha,
            seed=seed,
            calibration_size=calibration_size,
        )
        card = registry.register(staged, card)
    if promote:
        registry.promote(name, card.version, reason="synthetic benchmark model")
    log.info("registered synthetic %s v%d in %s", name, card.version, registry.root)
    return card


def _random_model(
    arch: str, shape: tuple[int, int, int], classes: int, alpha: float, seed: int
) -> tuple[Any, Preprocessing]:
    """``arch`` with seeded random weights and settled batch-norm statistics, and its preprocessing."""
    import keras

    from training.architectures import ArchParams, build_model, get_architecture

    keras.utils.set_random_seed(seed)
    spec = get_architecture(arch).preprocessing(shape)
    model = build_model(arch, ArchParams(spec.shape, classes, alpha=alpha))
    settle_batchnorm(model, normalize(generated_images(32, spec.shape, seed + 1), spec))
    return model, spec


def _synthetic_card(
    model: Any,
    options: ExportOptions,
    measured: Measured,
    *,
    spec: Preprocessing,
    labels: tuple[str, ...],
    arch: str,
    alpha: float,
    seed: int,
    calibration_size: int,
) -> ModelCard:
    """The version's card, marked synthetic wherever a reader could take a figure for a real model's."""
    return ModelCard(
        name=options.name,
        version=0,
        labels=labels,
        preprocessing=spec,
        inputs=(TensorSpec("input", "float32", (-1, *spec.shape)),),
        outputs=(TensorSpec("probabilities", "float32", (-1, len(labels))),),
        architecture=arch,
        training={
            "synthetic": True,
            "random_init": True,
            "alpha": alpha,
            "seed": seed,
            "params": int(model.count_params()),
        },
        dataset={"name": "generated-images", "synthetic": True, "calibration_images": calibration_size},
        metrics={
            "synthetic": True,
            "note": "random weights: accuracy is meaningless; use for speed only",
        },
        export={
            "outputs_probabilities": True,
            "parity_max_abs_diff": measured.parity_max_abs_diff,
            "parity_images": options.parity_images,
            "quantization": options.quantization.to_dict(),
            "seconds": measured.seconds,
            "accuracy_gate": "off (synthetic)",
        },
        command=options.command,
    )
