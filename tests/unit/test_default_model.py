"""The shipped default model (models/fashion-mnist) loads without TensorFlow and classifies correctly."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.registry import Registry
from inference.session import OnnxClassifier

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_shipped_default_model(variant: str) -> None:
    from training.datasets import FASHION_MNIST_DIR, load_fashion_mnist

    registry = Registry(ROOT / "models")
    version = registry.resolve("fashion-mnist")
    card = registry.card("fashion-mnist", version)
    assert card.metrics["accuracy"]["fp32"] >= 0.93 and card.metrics["accuracy"][variant] >= 0.925
    assert card.command.startswith("imgserve train --dataset fashion-mnist")
    model = OnnxClassifier.load(registry.model_file("fashion-mnist", version, variant), card, variant)
    if not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian dataset-fashion-mnist is not installed")
    test = load_fashion_mnist().test
    probs = model.predict_pixels(test.x[:1000])
    assert (probs.argmax(1) == test.y[:1000]).mean() >= 0.9
