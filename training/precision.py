"""Training in bfloat16 on CPUs that have bfloat16 units (AVX512_BF16, AMX), with float32 models in and out.

Keras' ``mixed_bfloat16`` policy keeps the variables in float32 and computes in bfloat16, so the same weights
move between a float32 copy of a model and a mixed copy unchanged: a model is built (or loaded) in float32,
copied into a mixed twin for ``fit``, and copied back before anything is evaluated, saved or exported. ONNX
export, INT8 calibration and serving therefore never see a bfloat16 op. Measured on the 2-vCPU AVX-512 machine
(vgg3, batch 128): 74 ms per training step instead of 90. A CPU without bfloat16 units has to emulate them;
expect it to be slower there (not measured: the machines here had them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras

PRECISIONS = ("float32", "bfloat16")
_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """A copy of functional ``model`` computing in ``precision`` (its output layers stay float32, so the loss
    sees float32 probabilities), holding the same weights."""
    import keras

    policy = _POLICY[precision]
    config = model.get_config()
    raw = config.get("output_layers") or []
    outputs = {entry[0] for entry in ([raw] if raw and isinstance(raw[0], str) else raw)}  # one output: flat
    for layer in config["layers"]:
        _set_policy(layer["config"], "float32" if layer["config"].get("name") in outputs else policy)
    twin = keras.Model.from_config(config)
    twin.set_weights(model.get_weights())
    return twin


def _set_policy(config: Any, policy: str) -> None:
    """Rewrite every dtype policy in a layer config (nested models included) to ``policy``."""
    if isinstance(config, dict):
        dtype = config.get("dtype")
        if isinstance(dtype, dict) and dtype.get("class_name") == "DTypePolicy":
            dtype["config"]["name"] = policy  # (an input layer's dtype is a plain string: left alone)
        for value in config.values():
            _set_policy(value, policy)
    elif isinstance(config, list):
        for value in config:
            _set_policy(value, policy)
