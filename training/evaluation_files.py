"""An :class:`~training.evaluate.Evaluation` written out: its JSON and its confusion matrix drawn as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.atomic import atomic_write_bytes, atomic_write_json

from .evaluate import Evaluation


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
