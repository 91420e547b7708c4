"""Finding a version's confusion matrix: the PNG training wrote, else the metadata's list of lists (which
admin/confusion_render.py draws)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

PNG_NAMES = ("confusion_matrix.png", "confusion.png", "evaluation_confusion.png")


def find_png(files: Iterable[str]) -> str | None:
    """Which of a version's files is its confusion-matrix image, under the names training is known to use."""
    names = set(files)
    for name in PNG_NAMES:
        if name in names:
            return name
    found = sorted(n for n in names if "/" not in n and fnmatch.fnmatch(n, "*confusion*.png"))
    return found[0] if found else None


def find_matrix(metrics: dict[str, Any], n_labels: int) -> list[list[float]] | None:
    """``metrics["confusion_matrix"]``, or the same key one level down (e.g. per variant, int8 first)."""
    candidates: list[Any] = [metrics.get("confusion_matrix")]
    for key in ("int8", "fp32", "evaluation", "test", "heldout"):
        sub = metrics.get(key)
        if isinstance(sub, dict):
            candidates.append(sub.get("confusion_matrix"))
    candidates += [v.get("confusion_matrix") for v in metrics.values() if isinstance(v, dict)]
    for m in candidates:
        if _is_square(m, n_labels):
            return m
    return None


def _is_square(m: Any, n: int) -> bool:
    return (
        isinstance(m, list) and len(m) == n and n > 0
        and all(isinstance(r, list) and len(r) == n and all(isinstance(x, int | float) for x in r) for r in m)
    )

