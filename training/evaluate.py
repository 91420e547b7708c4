"""Classification metrics from predicted probabilities, whatever produced them (Keras, ONNX fp32, ONNX INT8),
so that the numbers in metadata.json for every variant are computed the same way. Writing them out (JSON, the
confusion matrix as a PNG): training/evaluation_files.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    report: dict[str, Any]  # scikit-learn classification_report(output_dict=True)
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    labels: tuple[str, ...]
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "count": self.count,
            "labels": list(self.labels),
            "report": self.report,
            "confusion_matrix": self.confusion,
        }

    def per_class(self) -> dict[str, dict[str, float]]:
        """precision/recall/F1/support per label: the compact form kept in metadata."""
        return {
            label: {k: round(float(v), 4) for k, v in self.report[label].items()}
            for label in self.labels
            if label in self.report
        }


def evaluate_predictions(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]) -> Evaluation:
    """Top-1 accuracy, per-class precision/recall/F1 and the confusion matrix."""
    from sklearn.metrics import classification_report, confusion_matrix

    y_true = np.asarray(y_true)
    y_pred = np.asarray(probs).argmax(axis=-1)
    ids = list(range(len(labels)))
    report = classification_report(
        y_true, y_pred, labels=ids, target_names=list(labels), output_dict=True, zero_division=0
    )
    cm = confusion_matrix(y_true, y_pred, labels=ids)
    return Evaluation(
        accuracy=float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        report=report,
        confusion=cm.astype(int).tolist(),
        labels=tuple(labels),
        count=int(len(y_true)),
    )

