"""``imgserve import``: external ONNX classifiers built here with onnx.helper (NCHW/NHWC, 1/3 channels,
softmax/logits), registered, then served by the real runtime and checked against a by-hand computation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.importer import ImportOptions, import_model
from export.pipeline import ExportGateError
from imgserve.cli import main
from inference.errors import ConfigError
from inference.registry import Registry
from serving.runtime import ModelRuntime
from serving.settings import ServeSettings
from tests.fixtures import encode_image, external_classifier, image_dir, sample_image

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _write(tmp_path: Path, data: bytes, classes: int) -> tuple[Path, Path]:
    model = tmp_path / "model.onnx"
    model.write_bytes(data)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"kind {i}" for i in range(classes)) + "\n")
    return model, labels


def _expected(image: Image.Image, h: int, w: int, c: int, layout: str, weights: np.ndarray, bias: np.ndarray,
              mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """The model's probabilities computed by hand: resize, scale, mean/std per channel, layout, linear, softmax."""
    px = np.asarray(image.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR), np.float32)
    px = px.reshape(h, w, c) / 255.0
    x = (px - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    if layout == "NCHW":
        x = x.transpose(2, 0, 1)
    logits = x.reshape(1, -1) @ weights + bias
    e = np.exp(logits - logits.max())
    return e / e.sum()


async def _serve_one(root: Path, name: str, image: bytes, variant: str = "int8") -> tuple[np.ndarray, dict]:
    runtime = ModelRuntime(ServeSettings(models_dir=root, model=name, variant=variant, poll_interval_s=0, lanes=1,
                                         workers=1, auto_batch=False))
    await runtime.start()
    try:
        result = await runtime.classify_images([image])
        return result.probabilities[0], runtime.describe()
    finally:
        await runtime.stop()


@pytest.mark.parametrize(
    ("layout", "channels", "softmax"),
    [("NCHW", 3, True), ("NCHW", 3, False), ("NHWC", 1, False), ("NHWC", 3, True), ("NCHW", 1, True)],
)
def test_import_reads_the_graph_and_serves_like_the_hand_computation(
    tmp_path: Path, layout: str, channels: int, softmax: bool
) -> None:
    h, w, classes = 12, 10, 4
    data, weights, bias = external_classifier(h, w, channels, classes, layout=layout, softmax=softmax, seed=3)
    model, labels = _write(tmp_path, data, classes)
    mean, std = (MEAN, STD) if channels == 3 else ((0.5,), (0.25,))
    registry = Registry(tmp_path / "models")
    options = ImportOptions(name="ext", labels=tuple(f"kind {i}" for i in range(classes)), mean=mean, std=std)
    card = import_model(model, registry, options)  # layout, size and channels all read from the graph

    assert (card.preprocessing.layout, card.preprocessing.shape) == (layout, (h, w, channels))
    assert card.export["outputs_probabilities"] is softmax
    assert card.variants == ("fp32",) and card.export["int8"]["available"] is False
    assert not (registry.version_dir("ext", card.version) / "model.int8.onnx").exists()
    assert registry.aliases("ext")["production"] == card.version

    image = sample_image((37, 23), "RGB", seed=9)
    probs, described = asyncio.run(_serve_one(registry.root, "ext", encode_image(image)))
    expected = _expected(image, h, w, channels, layout, weights, bias, mean, std)[0]
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)
    assert abs(float(probs.sum()) - 1.0) < 1e-5  # logits models get the softmax from the server
    assert described["variant"] == "fp32" and described["variants"] == ["fp32"]
    assert "int8 is not available" in described["variant_note"]


def test_calibrated_import_writes_a_gated_int8_variant(tmp_path: Path) -> None:
    data, _, _ = external_classifier(16, 16, 3, 5, layout="NCHW", softmax=False, seed=1, fixed_batch=True)
    model, labels = _write(tmp_path, data, 5)
    calib = image_dir(tmp_path / "calib" / "some-class", 40, size=(20, 20))
    root = tmp_path / "models"
    code = main(["import", str(model), "--name", "torchish", "--labels", str(labels), "--models-dir", str(root),
                 "--mean", *map(str, MEAN), "--std", *map(str, STD), "--calibration", str(calib.parent)])
    assert code == 0
    registry = Registry(root)
    card = registry.card("torchish", 1)
    assert card.variants == ("fp32", "int8")
    assert card.export["int8"]["calibration_images"] == 40
    assert card.export["int8"]["top1_agreement"] >= 0.95
    assert card.metrics["int8_top1_agreement"] == card.export["int8"]["top1_agreement"]
    assert card.command.startswith("imgserve import ") and "--calibration" in card.command
    assert card.inputs[0].shape == (-1, 3, 16, 16)  # the fixed batch of 1 was made dynamic
    probs, described = asyncio.run(_serve_one(root, "torchish", encode_image(sample_image(seed=2))))
    assert described["variant"] == "int8" and "variant_note" not in described
    assert probs.shape == (5,)


def test_int8_gate_failure_registers_nothing(tmp_path: Path) -> None:
    """Two classes whose weights differ by 1e-5 (fp32 always picks the second): INT8 weights cannot tell them
    apart, the scores tie and top-1 flips to the first."""
    features, classes = 8 * 8 * 3, 3
    weights = np.random.default_rng(0).normal(0, 0.05, size=(features, classes)).astype(np.float32)
    weights[:, 1] = weights[:, 0] + 1e-5
    bias = np.array([0.0, 0.0, -50.0], np.float32)
    data, _, _ = external_classifier(8, 8, 3, classes, weights=weights, bias=bias, softmax=False)
    model, _ = _write(tmp_path, data, classes)
    registry = Registry(tmp_path / "models")
    options = ImportOptions(name="fragile", labels=("a", "b", "c"), calibration=image_dir(tmp_path / "cal", 20))
    with pytest.raises(ExportGateError, match="INT8 gate failed"):
        import_model(model, registry, options)
    assert registry.list_versions("fragile") == []
    assert not any(p.name.startswith(".staging") for p in (tmp_path / "models" / "fragile" / "versions").iterdir())


def test_bad_imports_fail_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "models")
    ambiguous, _, _ = external_classifier(3, 3, 3, 2)  # [N, 3, 3, 3]: either layout
    model, labels = _write(tmp_path, ambiguous, 2)
    assert main(["import", str(model), "--name", "x", "--labels", str(labels), "--models-dir", root]) == 2
    assert "pass --layout NCHW|NHWC" in capsys.readouterr().err
    assert main(["import", str(model), "--name", "x", "--labels", str(labels), "--models-dir", root,
                 "--layout", "NCHW"]) == 0
    three_labels = tmp_path / "three.txt"
    three_labels.write_text("a\nb\nc\n")
    assert main(["import", str(model), "--name", "x", "--labels", str(three_labels), "--models-dir", root,
                 "--layout", "NCHW"]) == 2
    assert "does not match the 3 labels" in capsys.readouterr().err
    assert main(["import", str(model), "--name", "x", "--labels", str(labels), "--models-dir", root,
                 "--layout", "NCHW", "--size", "4", "4"]) == 2
    assert "contradicts the graph's input [?, 3, 3, 3]" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["import", str(tmp_path / "junk.onnx"), "--name", "x", "--labels", str(labels), "--models-dir", root]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    assert Registry(root).list_versions("x") == [1]  # only the good import landed
    shown = json.loads(json.dumps(Registry(root).card("x", 1).to_dict()))
    assert shown["preprocessing"]["layout"] == "NCHW"


def test_import_options_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="at least 2 labels"):
        ImportOptions(name="m", labels=("only",))
    with pytest.raises(ConfigError, match="twice"):
        ImportOptions(name="m", labels=("a", "a"))
    with pytest.raises(ConfigError, match="min-agreement"):
        ImportOptions(name="m", labels=("a", "b"), min_agreement=1.5)
