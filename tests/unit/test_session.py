"""inference/session.py: a registered model runs in an OnnxClassifier (probabilities per row), and top_k
lists the best labels, highest score first."""

from __future__ import annotations

import numpy as np

from inference.registry import Registry
from inference.session import OnnxClassifier, top_k
from tests.fixtures import register_tiny


def test_onnx_classifier_runs_registered_model(registry: Registry) -> None:
    card = register_tiny(registry)
    model = OnnxClassifier.load(registry.model_file("tiny", 1, "fp32"), card, "fp32")
    model.warmup()
    probs = model.predict_pixels(np.zeros((3, 28, 28, 1), np.uint8))
    assert probs.shape == (3, 10)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    top = top_k(probs, card.labels, 3)
    assert len(top) == 3 and len(top[0]) == 3
    assert top[0][0]["score"] >= top[0][1]["score"] >= top[0][2]["score"]
