"""Bring your own ONNX classifier: ``imgserve import MODEL.onnx --name NAME --labels LABELS.txt``.

An external model (PyTorch/torchvision/timm export, or anything else producing ``[N, classes]`` from one float
image tensor) becomes a registry version like an exported one: ``model.onnx`` as given (batch axis made dynamic
if it was fixed), ``model.int8.onnx`` quantized on the calibration images when a directory of them is given,
and a ``metadata.json`` written from the options and from what the graph says (input name, layout, size,
channels, class count, whether it ends in a Softmax). Nothing is written by hand, and a version is built in the
registry's staging directory and published by ``Registry.register`` (immutable, whole or not at all).

Gate: INT8 and fp32 must agree on the top-1 class for at least ``min_agreement`` of the calibration images;
otherwise nothing is registered. Without calibration images there is no INT8 file, and the version's metadata
(``export.variants``, ``export.int8``) says so; serving then runs fp32 and ``/model`` states why.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import ConfigError
from inference.imagecodec import IMAGE_SUFFIXES, decode_image
from inference.metadata import LAYOUTS, ModelCard, Preprocessing, TensorSpec
from inference.preprocess import image_to_pixels, model_input
from inference.registry import VARIANT_FILES, Registry, check_name

from .pipeline import ExportGateError
from .quantize import QuantizationConfig

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("auto", "logits", "probabilities")
# Ops that keep a Softmax's output a probability distribution when they follow it.
_PASS_THROUGH_OPS = {"Identity", "Reshape", "Flatten", "Squeeze", "Cast"}


@dataclass(frozen=True)
class ImportOptions:
    """What ``imgserve import`` was told; ``None`` means "read it from the graph"."""

    name: str
    labels: tuple[str, ...]
    layout: str | None = None
    size: tuple[int, int] | None = None  # (height, width)
    channels: int | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    scale: float = 1.0 / 255.0
    resize: str = "bilinear"
    outputs: str = "auto"  # auto | logits | probabilities
    calibration: Path | None = None
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    min_agreement: float = 0.95  # INT8 vs fp32 top-1 agreement on the calibration images
    promote: bool = False
    command: str = ""

    def __post_init__(self) -> None:
        check_name(self.name)
        if len(self.labels) < 2:
            raise ConfigError(f"a classifier needs at least 2 labels, got {len(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError("the labels file lists a label twice")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.outputs not in OUTPUT_KINDS:
            raise ConfigError(f"--outputs must be one of {', '.join(OUTPUT_KINDS)}, got {self.outputs!r}")
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ConfigError(f"--min-agreement must be between 0 and 1, got {self.min_agreement}")


@dataclass(frozen=True)
class GraphInfo:
    """What the ONNX graph itself says about its first input and output."""

    input_name: str
    input_dims: tuple[int | None, ...]  # None: symbolic / unknown
    input_float: bool
    output_name: str
    output_dims: tuple[int | None, ...]
    ends_in_softmax: bool
    opset: int


def read_labels(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """One label per line, in output order; blank lines and surrounding spaces ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the labels file {Path(path).name}: {exc}") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_graph(model: Any) -> GraphInfo:
    """Input/output names and dims, and whether the output comes straight from a Softmax."""
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or not graph.output:
        raise ConfigError(
            f"expected a classifier with one image input and an output, got {len(inputs)} inputs and "
            f"{len(graph.output)} outputs"
        )
    producers = {out: node for node in graph.node for out in node.output}
    name = graph.output[0].name
    node = producers.get(name)
    while node is not None and node.op_type in _PASS_THROUGH_OPS:
        node = producers.get(node.input[0])
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphInfo(
        input_name=inputs[0].name,
        input_dims=_dims(inputs[0]),
        input_float=inputs[0].type.tensor_type.elem_type == 1,  # TensorProto.FLOAT
        output_name=name,
        output_dims=_dims(graph.output[0]),
        ends_in_softmax=node is not None and node.op_type == "Softmax",
        opset=opset,
    )


def _dims(value_info: Any) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)


def preprocessing_for(info: GraphInfo, options: ImportOptions) -> Preprocessing:
    """Options and graph combined; a value both give must agree, one neither gives is an error naming the flag."""
    if not info.input_float:
        raise ConfigError(f"input '{info.input_name}' is not float32; imgserve feeds models normalised float32 images")
    if len(info.input_dims) != 4:
        raise ConfigError(f"input '{info.input_name}' has {len(info.input_dims)} dimensions; an image model takes 4")
    _, a, b, c = info.input_dims
    layout = options.layout or _guess_layout(a, c)
    if layout is None:
        raise ConfigError(
            f"cannot tell the layout of input '{info.input_name}' {_show(info.input_dims)}; pass --layout NCHW|NHWC"
        )
    graph_c, graph_h, graph_w = (a, b, c) if layout == "NCHW" else (c, a, b)
    channels = _agree("--channels", options.channels, graph_c, info)
    h = _agree("--size (height)", options.size[0] if options.size else None, graph_h, info)
    w = _agree("--size (width)", options.size[1] if options.size else None, graph_w, info)
    if h is None or w is None:
        raise ConfigError(f"input '{info.input_name}' {_show(info.input_dims)} has no fixed size; pass --size H W")
    if channels is None:
        raise ConfigError(f"input '{info.input_name}' {_show(info.input_dims)} has no fixed channel count; pass --channels")
    try:
        return Preprocessing(
            height=h, width=w, channels=channels, scale=options.scale, mean=options.mean, std=options.std,
            resize=options.resize, layout=layout,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _guess_layout(a: int | None, c: int | None) -> str | None:
    if a in (1, 3) and c not in (1, 3):
        return "NCHW"
    if c in (1, 3) and a not in (1, 3):
        return "NHWC"
    return None


def _agree(flag: str, given: int | None, graph: int | None, info: GraphInfo) -> int | None:
    if given is not None and graph is not None and given != graph:
        raise ConfigError(f"{flag} {given} contradicts the graph's input {_show(info.input_dims)}")
    return given if given is not None else graph


def _show(dims: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def load_calibration(directory: Path, spec: Preprocessing, limit: int) -> tuple[np.ndarray, list[str]]:
    """Up to ``limit`` images under ``directory`` (recursively, sorted) as uint8 NHWC pixels at the model's size."""
    if not directory.is_dir():
        raise ConfigError(f"--calibration {directory} is not a directory")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[:limit]
    if not files:
        raise ConfigError(f"--calibration {directory} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    pixels = [image_to_pixels(decode_image(p.read_bytes()), spec) for p in files]
    return np.stack(pixels), [str(p.relative_to(directory)) for p in files]


def import_model(source: str | os.PathLike[str], registry: Registry, options: ImportOptions) -> ModelCard:
    """Check, quantize, gate and register ``source`` as the next version of ``options.name``."""
    import onnx

    source = Path(source)
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ConfigError(f"{source.name} is not a readable ONNX model ({type(exc).__name__})") from None
    info = read_graph(model)
    spec = preprocessing_for(info, options)
    classes = info.output_dims[-1] if len(info.output_dims) == 2 else None
    if len(info.output_dims) != 2 or classes not in (None, len(options.labels)):
        raise ConfigError(
            f"output '{info.output_name}' {_show(info.output_dims)} does not match the {len(options.labels)} labels "
            "given; expected [N, classes]"
        )
    _dynamic_batch(model)
    probabilities = info.ends_in_softmax if options.outputs == "auto" else options.outputs == "probabilities"
    with registry.stage(options.name) as staged:
        fp32 = staged / VARIANT_FILES["fp32"]
        onnx.save(model, str(fp32))
        measured = _quantize_and_gate(fp32, staged, spec, options, probabilities)
        card = registry.register(staged, make_card(source, info, spec, options, probabilities, measured))
    if options.promote and registry.aliases(options.name).get("production") != card.version:
        registry.promote(options.name, card.version, reason="import --promote")
    return card


def _dynamic_batch(model: Any) -> None:
    """Make the batch axis of the input and output symbolic, so the batcher may run several images at once."""
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"


def _quantize_and_gate(
    fp32: Path, out: Path, spec: Preprocessing, options: ImportOptions, probabilities: bool
) -> dict[str, Any]:
    """Run fp32 on two rows (the graph must take a batch), then, given calibration images, write INT8 and
    check that it picks the same top-1 class as fp32 on them."""
    from inference.session import OnnxClassifier

    from .quantize import quantize

    probe = _probe_card(spec, options, probabilities)
    classifier = OnnxClassifier.load(fp32, probe, "fp32")
    try:
        out_probe = classifier.predict(np.zeros((2, *spec.input_shape), np.float32))
    except Exception as exc:
        raise ConfigError(f"the model does not run on a batch of 2 images ({type(exc).__name__}): {exc}") from None
    if out_probe.shape != (2, len(options.labels)):
        raise ConfigError(f"the model returns shape {list(out_probe.shape)}, expected [N, {len(options.labels)}]")
    if options.calibration is None:
        return {"variants": ["fp32"], "int8": {"available": False, "reason": "imported without --calibration images"}}
    pixels, files = load_calibration(options.calibration, spec, options.quantization.calibration_size)
    x = model_input(pixels, spec)
    int8_path = quantize(fp32, x, options.quantization, out / VARIANT_FILES["int8"])
    top_fp32 = classifier.predict(x).argmax(axis=1)
    top_int8 = OnnxClassifier.load(int8_path, probe, "int8").predict(x).argmax(axis=1)
    agreement = float((top_fp32 == top_int8).mean())
    if agreement < options.min_agreement:
        raise ExportGateError(
            f"INT8 gate failed: INT8 and fp32 agree on the top-1 class for {agreement:.1%} of the {len(x)} "
            f"calibration images (required: {options.min_agreement:.1%}); try another --quantization preset, "
            "more calibration images, or import without --calibration (fp32 only); nothing was registered"
        )
    digest = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    return {
        "variants": ["fp32", "int8"],
        "int8": {"available": True, "top1_agreement": agreement, "calibration_images": len(x)},
        "calibration": {"images": len(x), "files_sha256": digest},
    }


def _probe_card(spec: Preprocessing, options: ImportOptions, probabilities: bool) -> ModelCard:
    return ModelCard(
        name=options.name, version=0, labels=options.labels, preprocessing=spec, inputs=(), outputs=(),
        export={"outputs_probabilities": probabilities},
    )


def make_card(
    source: Path, info: GraphInfo, spec: Preprocessing, options: ImportOptions, probabilities: bool,
    measured: dict[str, Any],
) -> ModelCard:
    """metadata.json of an imported version: where it came from, how it is fed, what the gate measured."""
    import onnxruntime

    int8 = measured["int8"]
    metrics: dict[str, Any] = {}
    if int8["available"]:
        metrics = {"int8_top1_agreement": int8["top1_agreement"], "evaluated_on": {"split": "calibration",
                   "images": int8["calibration_images"]}}
    return ModelCard(
        name=options.name,
        version=0,  # allocated by Registry.register
        labels=options.labels,
        preprocessing=spec,
        inputs=(TensorSpec(info.input_name, "float32", (-1, *spec.input_shape)),),
        outputs=(TensorSpec(info.output_name, "float32", (-1, len(options.labels))),),
        architecture="imported-onnx",
        dataset={"calibration": measured.get("calibration")},
        metrics=metrics,
        export={
            "source": "import",
            "source_file": source.name,
            "source_sha256": _sha256(source),
            "outputs_probabilities": probabilities,
            "output_kind": "probabilities" if probabilities else "logits (softmax applied by the server)",
            "variants": measured["variants"],
            "int8": int8,
            "min_agreement": options.min_agreement,
            "quantization": options.quantization.to_dict() if int8["available"] else None,
            "opset": info.opset,
            "onnxruntime": onnxruntime.__version__,
        },
        command=options.command,
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

