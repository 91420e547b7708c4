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

from inference.errors import ConfigError

if TYPE_CHECKING:
    import keras

PRECISIONS = ("float32", "bfloat16")
_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def with_precision(model: keras.Model, precision: str) -> keras.Model:
    """A copy of ``model`` (functional or Sequential) computing in ``precision``, holding the same weights.
    Its output layers stay float32, so the loss sees float32 probabilities. A subclassed model, whose config
    does not list its layers, is a ConfigError: such a model can only be trained in float32."""
    import keras

    policy = _POLICY[precision]
    try:
        config = model.get_config()
    except NotImplementedError:  # a subclassed model whose constructor Keras cannot describe
        config = {}
    if not isinstance(config.get("layers"), list) or not config["layers"]:
        raise ConfigError(f"--precision {precision} needs a functional or Sequential Keras model; "
                          f"{type(model).__name__} {model.name!r} is subclassed: train it with --precision float32")
    outputs = _output_layers(config, sequential=isinstance(model, keras.Sequential))
    for layer in config["layers"]:
        _set_policy(layer["config"], "float32" if layer["config"].get("name") in outputs else policy)
    return rebuilt(model, config)


def rebuilt(model: keras.Model, config: dict[str, Any] | None = None) -> keras.Model:
    """A new model of ``model``'s class (functional or Sequential) from ``config`` (default: its own),
    holding ``model``'s weights, without its optimizer or compiled state."""
    clone = type(model).from_config(model.get_config() if config is None else config)
    clone.set_weights(model.get_weights())
    return clone


def _output_layers(config: dict[str, Any], *, sequential: bool) -> set[str]:
    """Names of the layers whose outputs are the model's: a Sequential model's last layer, or a functional
    model's ``output_layers`` (a flat ``[name, node, tensor]`` entry when there is one output)."""
    if sequential:
        return {config["layers"][-1]["config"]["name"]}
    raw = config.get("output_layers") or []
    return {entry[0] for entry in ([raw] if raw and isinstance(raw[0], str) else raw)}


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
