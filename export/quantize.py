"""Static INT8 quantization with ONNX Runtime, calibrated on normalised training images.

``QuantizationConfig`` validates itself and is written into the version's metadata (provenance: anyone can
re-quantize the fp32 model the same way). The default preset is the one measured fastest on this project's
reference CPU at equal accuracy (see docs/training.md, "Choosing the INT8 format").
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from inference.errors import ConfigError

log = logging.getLogger(__name__)

_FORMATS = {"qoperator": QuantFormat.QOperator, "qdq": QuantFormat.QDQ}
_TYPES = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


@dataclass(frozen=True)
class QuantizationConfig:
    format: str = "qoperator"  # qoperator | qdq
    activation_type: str = "uint8"  # uint8 | int8
    weight_type: str = "int8"  # int8 | uint8
    per_channel: bool = False
    reduce_range: bool = False  # 7-bit weights: only for CPUs without VNNI
    calibrate_method: str = "minmax"  # minmax | entropy | percentile
    preprocess: bool = True  # quant_pre_process: fold/fuse and infer shapes before quantizing
    # Softmax stays float: quantized, its outputs would be multiples of 1/256 and not sum to 1.
    float_op_types: tuple[str, ...] = ("Softmax",)
    calibration_size: int = 500  # training images the activation ranges are measured on
    calibration_batch: int = 50

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("format", self.format, _FORMATS),
            ("activation_type", self.activation_type, _TYPES),
            ("weight_type", self.weight_type, _TYPES),
            ("calibrate_method", self.calibrate_method, _METHODS),
        ):
            if value not in allowed:
                raise ConfigError(f"quantization {name} {value!r} is not one of {', '.join(allowed)}")
        if self.calibration_size < 1 or self.calibration_batch < 1:
            raise ConfigError("calibration size and batch must be >= 1")
        if self.format == "qoperator" and self.activation_type == "int8" and self.weight_type == "uint8":
            raise ConfigError("int8 activations with uint8 weights are not supported by ONNX Runtime")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "float_op_types": list(self.float_op_types)}

    def replace(self, **changes: Any) -> QuantizationConfig:
        return dataclasses.replace(self, **changes)

    @property
    def label(self) -> str:
        """Short name for tables: ``qoperator-u8s8-pt`` (pt = per tensor, pc = per channel)."""
        a, w = (
            ("u8" if self.activation_type == "uint8" else "s8"),
            ("u8" if self.weight_type == "uint8" else "s8"),
        )
        return f"{self.format}-{a}{w}-{'pc' if self.per_channel else 'pt'}{'' if self.preprocess else '-raw'}"


# Named presets (optimum-style). The default is measured in docs/training.md.
PRESETS: dict[str, QuantizationConfig] = {
    "default": QuantizationConfig(),
    "qdq": QuantizationConfig(format="qdq"),
    "qdq-per-channel": QuantizationConfig(format="qdq", per_channel=True),
    "qoperator-per-channel": QuantizationConfig(per_channel=True),
    "no-vnni": QuantizationConfig(reduce_range=True),
}


def preset(name: str) -> QuantizationConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown quantization preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


class ArrayCalibrationReader(CalibrationDataReader):
    """Feeds a float32 NHWC array (already normalised, as serving would) to the calibrator in batches."""

    def __init__(self, x: np.ndarray, input_name: str, batch_size: int):
        self.x, self.input_name, self.batch_size = np.ascontiguousarray(x, np.float32), input_name, batch_size
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.x):
            return None
        batch = self.x[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)


def quantize(fp32: Path, calibration: np.ndarray, config: QuantizationConfig, out: Path) -> Path:
    """Write the INT8 model for ``fp32`` to ``out``, calibrated on ``calibration`` (normalised images)."""
    import onnx

    input_name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory(prefix="imgserve-quant-") as tmp:
        source = fp32
        if config.preprocess:
            source = Path(tmp) / "preprocessed.onnx"
            quant_pre_process(str(fp32), str(source), skip_symbolic_shape=True)
        reader = ArrayCalibrationReader(
            calibration[: config.calibration_size], input_name, config.calibration_batch
        )
        staged = Path(tmp) / "int8.onnx"
        exclude = [
            n.name
            for n in onnx.load(str(source), load_external_data=False).graph.node
            if n.op_type in config.float_op_types
        ]
        quantize_static(
            str(source),
            str(staged),
            reader,
            quant_format=_FORMATS[config.format],
            activation_type=_TYPES[config.activation_type],
            weight_type=_TYPES[config.weight_type],
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            calibrate_method=_METHODS[config.calibrate_method],
            nodes_to_exclude=exclude,
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(staged.read_bytes())
    log.info("wrote %s (%s, %.1f MB)", out.name, config.label, out.stat().st_size / 1e6)
    return out
