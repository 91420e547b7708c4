"""Model builders by name. Every model maps a normalised NHWC float32 batch to softmax probabilities.

Each architecture also says how pixels are normalised (``scale``/``mean``/``std``), because that is part of
the model: the values go into ``Preprocessing`` and from there into metadata.json, which serving reads.
Keras is imported inside the builders so that checking a name (the CLI does it first) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from inference.errors import ConfigError
from inference.metadata import Preprocessing

if TYPE_CHECKING:
    import keras

# Keras' default batch-norm momentum (0.99; 0.999 in MobileNetV2) lets the moving statistics lag the weights
# for the few hundred steps of a short CPU run: validation accuracy then sits far below training accuracy
# (measured on Fashion-MNIST: 19 % vs 85 % after one epoch; 85 % with 0.9).
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class ArchParams:
    input_shape: tuple[int, int, int]
    num_classes: int
    alpha: float = 1.0  # width multiplier (mobilenetv2)
    weights: str | None = None  # local weights file for the backbone (mobilenetv2, no top); never downloaded
    dropout: float = 0.3


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[ArchParams], keras.Model]
    scale: float
    mean: float
    min_size: int  # smallest input side the network accepts
    folder_size: int  # default input side for folder datasets
    help: str

    def preprocessing(self, shape: tuple[int, int, int]) -> Preprocessing:
        """The spec for ``shape`` with this architecture's pixel normalisation."""
        h, w, c = shape
        return Preprocessing(height=h, width=w, channels=c, scale=self.scale, mean=(self.mean,), std=(1.0,))


def _conv_block(x: keras.KerasTensor, filters: int, convs: int, pool: bool = True) -> keras.KerasTensor:
    from keras import layers

    for _ in range(convs):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ReLU()(x)
    return layers.MaxPooling2D()(x) if pool else x


def _softmax_head(x: keras.KerasTensor, p: ArchParams) -> keras.KerasTensor:
    """Dropout, then the softmax layer every architecture ends in (named ``probabilities``)."""
    from keras import layers

    x = layers.Dropout(p.dropout)(x)
    return layers.Dense(p.num_classes, activation="softmax", name="probabilities")(x)


def build_small_cnn(p: ArchParams) -> keras.Model:
    """VGG-style: two blocks of two 3x3 convs (32, 64 filters) with batch norm, then a 128-unit dense layer.
    About 0.47 M parameters; on Fashion-MNIST 93.3 % test accuracy in 14 min on two shared CPU cores."""
    import keras
    from keras import layers

    inputs = keras.Input(p.input_shape, name="input")
    x = _conv_block(inputs, 32, 2)
    x = _conv_block(x, 64, 2)
    x = layers.Flatten()(x)
    x = layers.Dropout(p.dropout)(x)
    x = layers.Dense(128, activation="relu")(x)
    return keras.Model(inputs, _softmax_head(x, p), name="small_cnn")


def build_vgg3(p: ArchParams) -> keras.Model:
    """Three VGG stages of two 3x3 convs (32, 64, 128 filters; pooling after the first two), global average
    pooling and a softmax layer. About 0.29 M parameters; ~1.3x small-cnn's time per training step. The shipped
    default (v2, v3): with flips, shifts and label smoothing, 93.53 % on Fashion-MNIST in 14 minutes on two CPU
    cores; 94.14 % in bfloat16 with test-time flip averaging (v3); small-cnn with flips and 1-px shifts had
    reached 93.15 % after 16 epochs (docs/training.md)."""
    import keras
    from keras import layers

    inputs = keras.Input(p.input_shape, name="input")
    x = _conv_block(inputs, 32, 2)
    x = _conv_block(x, 64, 2)
    x = _conv_block(x, 128, 2, pool=False)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, _softmax_head(x, p), name="vgg3")


def build_mobilenetv2(p: ArchParams) -> keras.Model:
    """Keras' MobileNetV2 backbone (random init, or a local no-top weights file) + a softmax head.
    Never downloads weights."""
    import keras
    from keras import layers

    if p.weights is not None:
        if not Path(p.weights).is_file():
            raise ConfigError(
                f"weights file {p.weights} not found (MobileNetV2 weights are never downloaded)"
            )
        if p.input_shape[-1] != 3:
            raise ConfigError("pretrained MobileNetV2 weights need 3-channel (RGB) input: use --channels 3")
    try:
        backbone = keras.applications.MobileNetV2(
            input_shape=p.input_shape, alpha=p.alpha, include_top=False, weights=p.weights, pooling="avg"
        )
    except ValueError as exc:  # bad alpha / size / weights file: Keras explains which
        raise ConfigError(f"cannot build mobilenetv2: {exc}") from None
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    inputs = keras.Input(p.input_shape, name="input")
    return keras.Model(inputs, _softmax_head(backbone(inputs), p), name=f"mobilenetv2_{p.alpha:g}")


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("small-cnn", build_small_cnn, 1.0 / 255.0, 0.0, 4, 64, "fast VGG-style CNN (default)"),
        Architecture("vgg3", build_vgg3, 1.0 / 255.0, 0.0, 4, 64, "3-stage VGG-style CNN, global pooling"),
        # MobileNetV2 expects pixels in [-1, 1]: x / 127.5 - 1.
        Architecture(
            "mobilenetv2", build_mobilenetv2, 1.0 / 127.5, 1.0, 32, 224, "keras.applications MobileNetV2"
        ),
    )
}


def get_architecture(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}"
        ) from None


def build_model(name: str, params: ArchParams) -> keras.Model:
    """Build architecture ``name``; checks the input size it needs first, with an error that says so."""
    arch = get_architecture(name)
    h, w, _ = params.input_shape
    if min(h, w) < arch.min_size:
        raise ConfigError(f"{name} needs images of at least {arch.min_size}x{arch.min_size}; use --img-size")
    return arch.build(params)
