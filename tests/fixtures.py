"""Tiny real models for tests: ONNX graphs built with onnx.helper and registered in a temp registry."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from inference.metadata import ModelCard, Preprocessing, TensorSpec
from inference.registry import Registry


def tiny_onnx_bytes(height: int, width: int, channels: int, classes: int, seed: int) -> bytes:
    """A linear classifier + softmax over the flattened NHWC input, dynamic batch, opset 17."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    features = height * width * channels
    weights = rng.normal(0, 0.05, size=(features, classes)).astype(np.float32)
    bias = rng.normal(0, 0.1, size=(classes,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["logits0"]),
            helper.make_node("Add", ["logits0", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", height, width, channels])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        initializer=[
            numpy_helper.from_array(np.array([-1, features], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(bias, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def conv_onnx_bytes(
    height: int, width: int, channels: int, classes: int, seed: int, *, layers: int = 4, filters: int = 64
) -> bytes:
    """A real, deliberately slow CNN (3x3 convolutions at full resolution, few weights): tens of ms per image
    on one core, so overload tests queue genuine work instead of faking slowness."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2])]
    inits = []
    c_in = channels
    for i in range(layers):
        w = rng.normal(0, (2.0 / (9 * c_in)) ** 0.5, size=(filters, c_in, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"conv{i}_w"))
        nodes.append(helper.make_node("Conv", [f"x{i}", f"conv{i}_w"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"x{i + 1}"]))
        c_in = filters
    head = rng.normal(0, 0.5, size=(filters, classes)).astype(np.float32)
    inits += [
        numpy_helper.from_array(head, "head_w"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "head_b"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [f"x{layers}"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "head_w"], ["logits0"]),
        helper.make_node("Add", ["logits0", "head_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny-conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", height, width, channels])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", classes])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def tiny_card(name: str = "tiny", height: int = 28, width: int = 28, channels: int = 1, classes: int = 10) -> ModelCard:
    return ModelCard(
        name=name,
        version=0,
        labels=tuple(f"class_{i}" for i in range(classes)),
        preprocessing=Preprocessing(height=height, width=width, channels=channels),
        inputs=(TensorSpec("input", "float32", (-1, height, width, channels)),),
        outputs=(TensorSpec("probabilities", "float32", (-1, classes)),),
        architecture="tiny-linear",
    )


def register_tiny(
    registry: Registry, name: str = "tiny", *, seed: int = 0, height: int = 28, width: int = 28,
    channels: int = 1, classes: int = 10, promote: bool = False, conv_layers: int = 0, filters: int = 64,
    labels: tuple[str, ...] | None = None,
) -> ModelCard:
    """Register a tiny model version (fp32 and 'int8' files hold the same graph) and return its card.
    ``conv_layers > 0`` registers the slow CNN of :func:`conv_onnx_bytes` instead of the linear model."""
    if conv_layers:
        data = conv_onnx_bytes(height, width, channels, classes, seed, layers=conv_layers, filters=filters)
    else:
        data = tiny_onnx_bytes(height, width, channels, classes, seed)
    card = tiny_card(name, height, width, channels, classes)
    if labels is not None:
        card = card.replace(labels=tuple(labels))
    if conv_layers:
        card = card.replace(architecture=f"tiny-conv{conv_layers}x{filters}")
    with registry.stage(name) as staged:
        (staged / "model.onnx").write_bytes(data)
        (staged / "model.int8.onnx").write_bytes(data)
        card = registry.register(staged, card)
    if promote:
        registry.promote(name, card.version, reason="test")
    return card


def encode_image(image: Image.Image, fmt: str = "PNG", **save_kwargs: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_kwargs)
    return buf.getvalue()


def sample_image(size: tuple[int, int] = (64, 48), mode: str = "RGB", seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[:, :, 0] if channels == 1 else arr, mode)


def write_registry(root: Path, **kwargs: object) -> Registry:
    registry = Registry(root)
    register_tiny(registry, **kwargs)  # type: ignore[arg-type]
    return registry


def class_folder_zip(classes: dict[str, int], *, size: tuple[int, int] = (28, 28), root: str | None = None, seed: int = 0) -> bytes:
    """A zip of class folders with generated images; each class has a distinct brightness pattern so a
    small model can learn it."""
    import zipfile

    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for ci, (label, count) in enumerate(sorted(classes.items())):
            for i in range(count):
                arr = rng.integers(0, 60, size=(size[1], size[0]), dtype=np.uint8)
                band = slice(ci * size[1] // max(1, len(classes)), (ci + 1) * size[1] // max(1, len(classes)))
                arr[band, :] += 180
                data = encode_image(Image.fromarray(arr, "L"), "PNG")
                name = f"{label}/img_{i:03d}.png"
                zf.writestr(f"{root}/{name}" if root else name, data)
    return buf.getvalue()


def fashion_mnist_folders(root: Path, card: ModelCard, per_class: int, *, start: int = 0) -> Path:
    """``per_class`` official Fashion-MNIST *test* images of each class as PNGs in ``root/<folder>/``, the
    folders named by ``card.label_folders`` (``T-shirt_top`` for ``T-shirt/top``): what a user of the
    default model would upload. Needs Debian's dataset-fashion-mnist."""
    from training.datasets import load_fashion_mnist

    test = load_fashion_mnist().test
    for index, folder in enumerate(card.label_folders):
        (root / folder).mkdir(parents=True, exist_ok=True)
        picks = np.flatnonzero(test.y == index)[start : start + per_class]
        for i in picks:
            Image.fromarray(test.x[i, :, :, 0], "L").save(root / folder / f"{int(i):05d}.png")
    return root


def external_classifier(
    height: int, width: int, channels: int, classes: int, *, layout: str = "NCHW", softmax: bool = True,
    seed: int = 0, fixed_batch: bool = False, weights: np.ndarray | None = None, bias: np.ndarray | None = None,
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A linear classifier as an outside tool would export it: input ``x`` in ``layout`` (NCHW: PyTorch style),
    flattened in that layout, optional final Softmax (else logits). Returns (onnx bytes, W, b) so tests can
    compute the expected output by hand."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    features = height * width * channels
    w = rng.normal(0, 0.05, size=(features, classes)).astype(np.float32) if weights is None else weights
    b = rng.normal(0, 0.1, size=(classes,)).astype(np.float32) if bias is None else bias
    dims = [channels, height, width] if layout == "NCHW" else [height, width, channels]
    batch: int | str = 1 if fixed_batch else "batch"
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
    ]
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=-1))
        out = "probs"
    graph = helper.make_graph(
        nodes, "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *dims])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [batch, classes])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), w, b


def image_dir(path: Path, count: int, *, size: tuple[int, int] = (40, 30), mode: str = "RGB", seed: int = 0) -> Path:
    """``count`` random PNG images under ``path`` (calibration sets, upload sets)."""
    path.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (path / f"img_{i:03d}.png").write_bytes(encode_image(sample_image(size, mode, seed=seed + i)))
    return path


def race_two_promotes(registry: Registry, name: str = "tiny", versions: tuple[int, int] = (2, 3)) -> dict[int, str]:
    """Two threads promote at the same moment, both having read the aliases before either writes (the race,
    made certain by a barrier inside the registry's read-change-write step). Returns version -> "won" or the
    Conflict message."""
    import threading

    from inference.errors import Conflict

    both_read = threading.Barrier(2)
    outcome: dict[int, str] = {}

    def promote(version: int) -> None:
        def change(aliases: dict[str, object]) -> tuple[dict[str, object], int]:
            both_read.wait(timeout=10)
            return {"production": version, "previous": aliases.get("production")}, version

        try:
            registry._change_aliases(name, change, "promote", "race test")
            outcome[version] = "won"
        except Conflict as exc:
            outcome[version] = exc.message

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return outcome
