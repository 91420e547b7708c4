"""What a person reads about a version: ``MODEL_CARD.md``, ``confusion.png`` and ``training_curves.png``,
written into the staged version next to metadata.json (so they are as immutable as the model).

The card is generated from the same ``ModelCard`` that becomes metadata.json, so the two cannot disagree.
Its version number is the directory's (allocated at registration, after the card is written).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from inference.atomic import atomic_write_bytes
from inference.metadata import ModelCard
from training.run_dir import CURVES_FILE  # the same name in a run directory and in a version

log = logging.getLogger(__name__)

CARD_FILE = "MODEL_CARD.md"
CONFUSION_FILE = "confusion.png"


def _pct(x: Any) -> str:
    return f"{100 * x:.2f} %" if isinstance(x, int | float) else "n/a"


def _class_rows(card: ModelCard) -> list[str]:
    per = card.metrics.get("per_class", {})
    fp32, int8 = per.get("fp32", {}), per.get("int8", {})
    rows = ["| label | folder name | recall fp32 | recall INT8 | F1 fp32 | test images |", "|---|---|---:|---:|---:|---:|"]
    for label, folder in zip(card.labels, card.label_folders, strict=True):
        a, b = fp32.get(label, {}), int8.get(label, {})
        support = a.get("support")
        rows.append(
            f"| {label} | `{folder}` | {_pct(a.get('recall'))} | {_pct(b.get('recall'))} | "
            f"{a.get('f1-score', 'n/a')} | {int(support) if isinstance(support, int | float) else 'n/a'} |"
        )
    return rows


def _limits(card: ModelCard) -> list[str]:
    pre, data = card.preprocessing, card.dataset
    kind = "grayscale" if pre.channels == 1 else "RGB"
    lines = [
        f"- Intended for {kind} images like its training data ({data.get('name', 'unknown data')}): every image is "
        f"resized to {pre.height}×{pre.width}; it always answers one of the {card.num_classes} labels above, "
        "also for images of something else (no 'unknown' class).",
        f"- Accuracy was measured on {card.metrics.get('evaluated_on', {}).get('images', 'n/a')} "
        f"{card.metrics.get('evaluated_on', {}).get('source') or ''} test images from the same source; "
        "images from another distribution (photos, other backgrounds, other framing) will score lower.",
    ]
    if data.get("name") == "fashion-mnist":
        lines.append("- Fashion-MNIST look: one centred garment, light on a dark background, 28×28. "
                     "Shirt / T-shirt / Pullover / Coat are its most confused classes (see the confusion matrix).")
    sizes = data.get("sizes", {})
    if isinstance(sizes.get("test"), int) and sizes["test"] < 200:
        lines.append(f"- Only {sizes['test']} test images: the accuracy above is a rough estimate.")
    return lines


def _load(during: dict[str, Any] | None, machine: dict[str, Any]) -> str:
    if during:
        return f"{during.get('min')}–{during.get('max')} (mean {during.get('mean')})"
    if machine:
        return f"{machine.get('loadavg_1m_start')} at start, max {machine.get('loadavg_1m_max')}"
    return "not recorded"


def _origin(parent: dict[str, Any]) -> str:
    if not parent:
        return "trained from scratch"
    if parent.get("version") is not None:
        return f"warm start from {parent.get('name')} v{parent['version']}"
    return f"warm start from {parent.get('path')}"


def model_card_markdown(card: ModelCard, *, curves: bool = True) -> str:
    """The human-readable card: data, metrics overall and per class, INT8 delta, intended use, the command.
    ``curves``: whether ``training_curves.png`` exists (not for versions whose run kept no history)."""
    acc = card.metrics.get("accuracy", {})
    fp32, int8 = acc.get("fp32"), acc.get("int8")
    delta = f"{100 * (int8 - fp32):+.2f} pt" if isinstance(fp32, float) and isinstance(int8, float) else "n/a"
    t, d, pre = card.training, card.dataset, card.preprocessing
    parent = t.get("parent") or {}
    machine = t.get("machine") or {}
    cpu = f" ({machine['cpu']})" if machine.get("cpu") else ""  # recorded since 2026-12-02
    lines = [
        f"# {card.name}: model card",
        "",
        f"{card.architecture}, {t.get('params', 'n/a')} parameters, input {pre.height}×{pre.width}×{pre.channels}, "
        f"{card.num_classes} classes. Version: this directory's number (metadata.json `version`).",
        "",
        "## Data",
        f"- dataset `{d.get('name', 'n/a')}`, fingerprint `{str(d.get('fingerprint', 'n/a'))[:16]}…`",
        f"- images: {_pairs(d.get('sizes'), '{:,}')} (test split: {d.get('test_source', 'n/a')})",
        f"- {_origin(parent)}",
        "",
        "## Metrics",
        f"- accuracy fp32 **{_pct(fp32)}**, INT8 **{_pct(int8)}** (INT8 delta {delta}), Keras {_pct(acc.get('keras'))}",
        f"- macro F1: {_pairs(card.metrics.get('macro_f1'), '{:.4f}')}",
        f"- ONNX fp32 vs Keras parity: max |Δ| {_sci(card.export.get('parity_max_abs_diff'))}",
        *(["- every answer averages the image's probabilities with its mirror image's (test-time flip; "
           "twice the model time per image)"] if card.export.get("tta_flip") else []),
        "",
        *_class_rows(card),
        "",
        "Confusion matrix: `confusion.png` (fp32 ONNX, test set). Training curves: "
        + ("`training_curves.png`." if curves else "not kept (this version's run recorded no per-epoch history)."),
        "",
        "## Training",
        f"- {t.get('epochs_run', 'n/a')} epochs (stopped by {t.get('stopped_by', 'n/a')}, best epoch "
        f"{t.get('best_epoch', 'n/a')}), {t.get('train_seconds', 'n/a')} s on {machine.get('cpus', '?')} CPUs{cpu}, "
        f"1-min load average {_load(t.get('loadavg_1m_during_training'), machine)}"
        + ("; computed in bfloat16 (float32 weights)" if (t.get("config") or {}).get("precision") == "bfloat16" else ""),
        "",
        "## Intended use and limits",
        *_limits(card),
        "",
        "## Reproduce",
        "```bash",
        card.command or "(no command recorded)",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_artifacts(out: Path, card: ModelCard, confusion_png: bytes, history: dict[str, list[float]]) -> None:
    """MODEL_CARD.md, confusion.png and training_curves.png into a staged version directory."""
    from training.plots import curves_png

    atomic_write_bytes(out / CARD_FILE, model_card_markdown(card, curves=bool(history)).encode())
    atomic_write_bytes(out / CONFUSION_FILE, confusion_png)
    if history:
        atomic_write_bytes(out / CURVES_FILE, curves_png(history, f"{card.name}: {card.architecture}"))


def write_missing_artifacts(version_dir: Path, card: ModelCard) -> list[str]:
    """MODEL_CARD.md and confusion.png for a version registered before export wrote them (the shipped
    fashion-mnist v1), from its metadata alone; a file the version has is never replaced, and its model files
    are not touched. No curves: such runs kept no per-epoch history. Returns the names written."""
    from training.evaluate import Evaluation
    from training.evaluation_files import confusion_png

    written = []
    if not (version_dir / CARD_FILE).exists():
        atomic_write_bytes(version_dir / CARD_FILE, model_card_markdown(card, curves=False).encode())
        written.append(CARD_FILE)
    matrix = card.metrics.get("confusion_matrix", {}).get("fp32")
    if matrix and not (version_dir / CONFUSION_FILE).exists():
        evaluated = Evaluation(
            accuracy=float(card.metrics["accuracy"]["fp32"]),
            report={},
            confusion=matrix,
            labels=tuple(card.labels),
            count=int(sum(map(sum, matrix))),
        )
        atomic_write_bytes(version_dir / CONFUSION_FILE, confusion_png(evaluated))
        written.append(CONFUSION_FILE)
    return written


def _pairs(values: dict[str, Any] | None, fmt: str) -> str:
    """``{'train': 54000, 'val': 6000}`` as ``train 54,000, val 6,000`` (``n/a`` when not recorded)."""
    if not values:
        return "n/a"
    return ", ".join(f"{'INT8' if k == 'int8' else k} {fmt.format(v)}" for k, v in values.items())


def _sci(x: Any) -> str:
    return f"{x:.2g}" if isinstance(x, (int, float)) else "n/a"
