"""Classification metrics from predicted probabilities, whatever produced them (Keras, ONNX fp32, ONNX INT8),
so that the numbers in metadata.json for every variant are computed the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.atomic import atomic_write_bytes, atomic_write_json


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


def top1_accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    return float((np.asarray(probs).argmax(axis=-1) == np.asarray(y_true)).mean())


def save_evaluation(evaluation: Evaluation, out_dir: Path, prefix: str = "evaluation") -> dict[str, Path]:
    """Write ``<prefix>.json`` and ``<prefix>_confusion.png`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_json(out_dir / f"{prefix}.json", evaluation.to_dict())
    png_path = atomic_write_bytes(out_dir / f"{prefix}_confusion.png", confusion_png(evaluation))
    return {"json": json_path, "png": png_path}


def confusion_png(evaluation: Evaluation) -> bytes:
    """The confusion matrix as a PNG (matplotlib, Agg backend: no display needed)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(evaluation.confusion)
    n = len(evaluation.labels)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * n + 2), max(4.5, 0.6 * n + 1.5)), dpi=100)
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), evaluation.labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), evaluation.labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {evaluation.accuracy:.2%} on {evaluation.count} images")
    if n <= 20:
        threshold = cm.max() / 2 if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    str(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if cm[i, j] > threshold else "black",
                )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
