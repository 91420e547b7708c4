"""Keras -> SavedModel -> ONNX fp32, and the parity check between them.

The ONNX graph always has one input ``input`` (float32 [batch, H, W, C], batch dynamic) and one output
``probabilities`` (float32 [batch, classes]), whatever the Keras layers were called: serving, the OIP
metadata and the registry cards rely on those names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.atomic import atomic_write_bytes

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"
OPSET = 17


def to_saved_model(model: keras.Model, out: Path) -> Path:
    """Export the inference graph (no optimizer, training=False) as a TF SavedModel directory."""
    model.export(str(out), format="tf_saved_model", verbose=False)
    return out


def to_onnx(saved_model: Path, out: Path, *, opset: int = OPSET) -> Path:
    """Convert a SavedModel's ``serve`` endpoint to ONNX with tf2onnx's Python API (checked to work with
    Keras 3 here), naming the input/output and the dynamic batch dimension."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    loaded = tf.saved_model.load(str(saved_model))
    (spec,) = loaded.signatures["serving_default"].structured_input_signature[1].values()
    signature = [tf.TensorSpec((None, *spec.shape[1:]), tf.float32, name=INPUT_NAME)]

    @tf.function(input_signature=signature)
    def serve(x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: loaded.serve(x)}

    model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset)
    for value in (*model_proto.graph.input, *model_proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM  # tf2onnx calls it "unk__NN"
    model_proto.producer_name = "imgserve (tf2onnx)"
    onnx.checker.check_model(model_proto)
    atomic_write_bytes(out, model_proto.SerializeToString())
    log.info("wrote %s (%.1f MB)", out.name, out.stat().st_size / 1e6)
    return out


def onnx_predict(path: Path, x: np.ndarray, *, batch_size: int = 256, threads: int = 0) -> np.ndarray:
    """Run an ONNX classifier over a float32 batch in chunks (CPU provider)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, session.get_outputs()[0].shape[-1]), np.float32)


def max_abs_diff(model: keras.Model, onnx_path: Path, x: np.ndarray) -> float:
    """Largest absolute difference between Keras and ONNX Runtime probabilities on ``x``."""
    expected = np.asarray(model(x, training=False), dtype=np.float32)
    actual = onnx_predict(onnx_path, x)
    return float(np.max(np.abs(expected - actual)))
