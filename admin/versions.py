"""What the dashboard's Models page shows of one version, normalised: metrics in one shape whatever training
wrote (several metadata layouts exist), the class-folder names, and the promotion decision a retrain job stored
with the candidate (``promotion.json``)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inference.registry import KERAS_FILE, Registry

from . import confusion

if TYPE_CHECKING:
    from .app import AdminState

log = logging.getLogger(__name__)


PER_CLASS_KEYS = ("per_class", "per_class_accuracy", "class_accuracy", "classes", "per_label")


def without_history(aliases: dict[str, Any]) -> dict[str, Any]:
    """``Registry.aliases`` without its ``history`` list: alias name -> version."""
    return {k: v for k, v in aliases.items() if k != "history"}


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def accuracies(metrics: dict[str, Any]) -> dict[str, float | None]:
    acc = metrics.get("accuracy")
    if isinstance(acc, dict):
        return {"fp32": _num(acc.get("fp32")), "int8": _num(acc.get("int8")), "keras": _num(acc.get("keras"))}
    out = {"fp32": _num(acc), "int8": None, "keras": None}
    for variant in ("fp32", "int8", "keras"):  # {"int8": {"accuracy": …}} layouts
        sub = metrics.get(variant)
        if isinstance(sub, dict) and _num(sub.get("accuracy")) is not None:
            out[variant] = _num(sub.get("accuracy"))
    return out


def per_class(metrics: dict[str, Any], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Rows ``{label, accuracy, precision, recall, f1, support, fp32, int8}`` (missing values None)."""
    found: Any = None
    for where in (metrics, metrics.get("accuracy") if isinstance(metrics.get("accuracy"), dict) else {}):
        for key in PER_CLASS_KEYS:
            if where.get(key) is not None:
                found = where[key]
                break
        if found is not None:
            break
    if found is None:
        return []
    rows: dict[str, dict[str, Any]] = {}

    def row(label: str) -> dict[str, Any]:
        return rows.setdefault(label, {"label": label, "accuracy": None, "precision": None, "recall": None,
                                       "f1": None, "support": None, "fp32": None, "int8": None})

    if isinstance(found, list) and len(found) == len(labels):
        for label, value in zip(labels, found, strict=True):
            row(label)["accuracy"] = _num(value)
    elif isinstance(found, dict):
        variants = {k: v for k, v in found.items() if k in ("fp32", "int8") and isinstance(v, dict)}
        if variants and not (set(found) & set(labels)):
            for variant, table in variants.items():
                for label, value in table.items():
                    val = _num(value) if not isinstance(value, dict) else _num(value.get("recall", value.get("accuracy")))
                    row(str(label))[variant] = val
        else:
            for label, value in found.items():
                if label not in labels:
                    continue
                r = row(str(label))
                if isinstance(value, dict):
                    r["precision"] = _num(value.get("precision"))
                    r["recall"] = _num(value.get("recall"))
                    r["f1"] = _num(value.get("f1-score", value.get("f1")))
                    r["support"] = _num(value.get("support"))
                    r["accuracy"] = _num(value.get("accuracy"))
                    r["fp32"], r["int8"] = _num(value.get("fp32")), _num(value.get("int8"))
                else:
                    r["accuracy"] = _num(value)
    order = {label: i for i, label in enumerate(labels)}
    return sorted(rows.values(), key=lambda r: order.get(r["label"], len(order)))


def promotion_record(registry: Registry, name: str, version: int, files: list[str]) -> dict[str, Any] | None:
    """The decision stored with a candidate (``promotion.json``; absent for versions made by export)."""
    from .policy import PROMOTION_FILE, Decision

    path = registry.fetch(name, version, PROMOTION_FILE) if PROMOTION_FILE in files else None
    if path is None:
        return None
    try:
        decision = Decision.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        log.warning("unreadable %s: %s", path, exc)
        return None
    return {**decision.to_dict(), "candidate": version}


def version_view(state: AdminState, name: str, version: int, aliases: dict[str, Any]) -> dict[str, Any]:
    registry = state.registry
    card = registry.card(name, version)
    files = registry.version_files(name, version)
    has_png = confusion.find_png(files) is not None
    has_matrix = confusion.find_matrix(card.metrics, len(card.labels)) is not None
    return {
        "version": version,
        "created_at": card.created_at,
        "architecture": card.architecture,
        "parent_version": card.parent_version,
        "labels": list(card.labels),
        "label_folders": list(card.label_folders),
        "promotion": promotion_record(registry, name, version, files),
        "aliases": sorted(k for k, v in aliases.items() if isinstance(v, int) and v == version),  # not "weights"
        "accuracy": accuracies(card.metrics),
        "per_class": per_class(card.metrics, card.labels),
        "confusion": "png" if has_png else ("matrix" if has_matrix else None),
        "has_keras": KERAS_FILE in files,
        "input": {"height": card.preprocessing.height, "width": card.preprocessing.width,
                  "channels": card.preprocessing.channels},
        "export": card.export,
        "training": card.training,
        "dataset": card.dataset,
        "command": card.command,
    }
