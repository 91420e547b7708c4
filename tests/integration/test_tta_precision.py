"""bfloat16 training (float32 model out) and test-time flip averaging, through the real train and export path
on a small Fashion-MNIST subset (flips keep its labels; digits' they do not)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgserve.cli import main
from inference.preprocess import normalize
from inference.registry import Registry
from training.precision import with_precision

pytestmark = pytest.mark.slow


def test_with_precision_round_trip_keeps_weights_and_float32_outputs() -> None:
    from training.architectures import ArchParams, build_model

    model = build_model("vgg3", ArchParams((28, 28, 1), 10))
    mixed = with_precision(model, "bfloat16")
    policies = {layer.name: layer.dtype_policy.name for layer in mixed.layers[1:]}
    assert policies.pop("probabilities") == "float32"  # the loss sees float32 probabilities
    assert set(policies.values()) == {"mixed_bfloat16"}
    assert mixed.output.dtype == "float32"
    for a, b in zip(model.get_weights(), mixed.get_weights(), strict=True):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    back = with_precision(mixed, "float32")
    assert {layer.dtype_policy.name for layer in back.layers[1:]} == {"float32"}
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    assert np.array_equal(np.asarray(back(x, training=False)), np.asarray(model(x, training=False)))


def test_bfloat16_run_with_tta_flip_exports_a_float32_mirror_averaging_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    from export.convert import onnx_predict
    from training.datasets import load_dataset
    from training.parent import load_parent

    run, models = tmp_path / "run", tmp_path / "models"
    argv = ["train", "--dataset", "fashion-mnist", "--arch", "vgg3", "--epochs", "1", "--batch-size", "32",
            "--max-train-samples", "600", "--precision", "bfloat16", "--tta-flip", "--out", str(run)]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == "bfloat16" and config["resolved"]["tta_flip"] is True
    trained = keras.models.load_model(run / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in trained.layers[1:]} == {"float32"}  # what ONNX sees

    assert main(["export", str(run), "--name", "fm", "--models-dir", str(models), "--max-int8-drop", "5"]) == 0
    capsys.readouterr()
    version = Registry(models).version_dir("fm", 1)
    card = Registry(models).card("fm", 1)
    assert card.export["tta_flip"] is True and "--precision bfloat16" in card.command and "--tta-flip" in card.command
    text = (version / "MODEL_CARD.md").read_text()
    assert "mirror image" in text and "computed in bfloat16 (float32 weights)" in text

    # The ONNX model answers with the mean over each image and its mirror image; the plain model does not.
    test = load_dataset("fashion-mnist").test
    x = normalize(test.x[:64], card.preprocessing)
    plain = np.asarray(trained(x, training=False))
    mirrored = np.asarray(trained(x[:, :, ::-1], training=False))
    served = onnx_predict(version / "model.onnx", x)
    assert np.allclose(served, (plain + mirrored) / 2, atol=1e-5)
    assert np.abs(served - plain).max() > 1e-3
    # the stored version keeps the plain model; a warm start from it inherits the flip averaging
    stored = keras.models.load_model(version / "model.keras", compile=False)
    assert np.allclose(np.asarray(stored(x, training=False)), plain, atol=1e-6)
    assert load_parent(str(version)).tta_flip is True


def test_a_users_sequential_model_trains_in_bfloat16_and_comes_back_float32(tmp_path: Path) -> None:
    """``--init-from`` takes any model.keras; a Sequential one (how most notebooks write a CNN) crashed in
    with_precision, which only knew functional configs."""
    import keras

    seq = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                            keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax", name="out")])
    mixed = with_precision(seq, "bfloat16")
    assert isinstance(mixed, keras.Sequential)
    assert [layer.dtype_policy.name for layer in mixed.layers] == ["mixed_bfloat16"] * 2 + ["float32"]
    seq.save(tmp_path / "seq.keras")
    run = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--init-from", str(tmp_path / "seq.keras"), "--epochs", "4",
            "--precision", "bfloat16", "--out", str(run)]
    assert main(argv) == 0
    trained = keras.models.load_model(run / "model.keras", compile=False)
    assert isinstance(trained, keras.Sequential)
    assert {layer.dtype_policy.name for layer in trained.layers} == {"float32"}
    assert json.loads((run / "summary.json").read_text())["test_accuracy"] > 0.5  # it learned (chance: 0.1)
