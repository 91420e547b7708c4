from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from admin.confusion import find_matrix, find_png
from admin.confusion_render import render_png
from admin.gradcam import colormap, overlay, png_data_url
from admin.versions import accuracies, per_class

LABELS = ("cat", "dog", "bird")


def test_per_class_from_a_classification_report() -> None:
    metrics = {"per_class": {"cat": {"precision": 0.9, "recall": 0.8, "f1-score": 0.85, "support": 10},
                             "dog": {"precision": 0.7, "recall": 0.6, "f1-score": 0.65, "support": 12},
                             "macro avg": {"precision": 0.8}}}
    rows = per_class(metrics, LABELS)
    assert [r["label"] for r in rows] == ["cat", "dog"]  # label order; report summary rows dropped
    assert rows[0]["recall"] == 0.8 and rows[0]["f1"] == 0.85 and rows[0]["support"] == 10 and rows[0]["accuracy"] is None


def test_per_class_other_shapes() -> None:
    assert [r["accuracy"] for r in per_class({"per_class_accuracy": [0.5, 0.6, 0.7]}, LABELS)] == [0.5, 0.6, 0.7]
    assert per_class({"accuracy": {"fp32": 0.9, "per_class": {"dog": 0.4}}}, LABELS)[0] == {
        "label": "dog", "accuracy": 0.4, "precision": None, "recall": None, "f1": None, "support": None, "fp32": None, "int8": None}
    split = per_class({"per_class": {"fp32": {"cat": 0.9, "dog": 0.8}, "int8": {"cat": 0.88, "dog": 0.79}}}, LABELS)
    assert [(r["label"], r["fp32"], r["int8"]) for r in split] == [("cat", 0.9, 0.88), ("dog", 0.8, 0.79)]
    assert per_class({}, LABELS) == []


def test_accuracies_layouts() -> None:
    assert accuracies({"accuracy": {"fp32": 0.9, "int8": 0.89}}) == {"fp32": 0.9, "int8": 0.89, "keras": None}
    assert accuracies({"accuracy": 0.9}) == {"fp32": 0.9, "int8": None, "keras": None}
    assert accuracies({"fp32": {"accuracy": 0.91}, "int8": {"accuracy": 0.9}}) == {"fp32": 0.91, "int8": 0.9, "keras": None}
    assert accuracies({}) == {"fp32": None, "int8": None, "keras": None}


def test_confusion_matrix_sources(tmp_path: Path) -> None:
    m = [[5, 1, 0], [0, 6, 1], [2, 0, 4]]
    assert find_matrix({"confusion_matrix": m}, 3) == m
    assert find_matrix({"int8": {"confusion_matrix": m}}, 3) == m
    assert find_matrix({"confusion_matrix": [[1, 2], [3, 4]]}, 3) is None  # wrong size for the labels
    assert find_png(["model.onnx", "metadata.json"]) is None
    assert find_png(["model.onnx", "evaluation_confusion.png"]) == "evaluation_confusion.png"
    assert find_png(["evaluation_confusion.png", "confusion_matrix.png"]) == "confusion_matrix.png"
    assert find_png(["my_confusion_v2.png"]) == "my_confusion_v2.png"


def test_render_confusion_png() -> None:
    data = render_png([[50, 3, 0], [2, 40, 8], [0, 0, 1]], ("T-shirt/top", "Trouser", "Ankle boot"))
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.width > 150 and img.height > 150
    big = Image.open(io.BytesIO(render_png(np.eye(40, dtype=int).tolist(), [f"c{i}" for i in range(40)])))
    assert big.width < 900  # cells shrink for many classes


def test_overlay_and_colormap() -> None:
    cmap = colormap(np.array([[0.0, 1.0]]))
    assert cmap.shape == (1, 2, 3) and cmap.dtype == np.uint8 and cmap[0, 0, 2] > cmap[0, 0, 0] and cmap[0, 1, 0] > cmap[0, 1, 2]
    image = Image.fromarray(np.zeros((28, 28), np.uint8), "L")
    cam = np.zeros((7, 7), np.float32)
    cam[5:, 5:] = 1.0
    base, blended = overlay(image, cam, max_side=280)
    assert base.size == blended.size == (280, 280) and blended.mode == "RGB"
    px = np.asarray(blended)
    assert px[260, 260].sum() > px[20, 20].sum()  # the hot corner is brighter than the cold one
    assert png_data_url(blended).startswith("data:image/png;base64,")
