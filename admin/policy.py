"""Promotion policy: a candidate becomes production only if it beats production on the same held-out images,
with the same label order, by at least ``margin`` (accuracy), unless forced.

A candidate whose labels (or their order), input shape or channels differ from production's is *not
comparable*: clients of this model name would get other classes or have their inputs refused, so
``if-better`` never promotes it; ``force`` does, with a warning kept in the decision (job, dashboard). A new
label set belongs under a new model name, whose first version becomes its production.

Evaluation runs the ONNX variant that is served (TF-free), with the shared preprocessing, so the comparison
measures what clients would get. The decision (both accuracies, per-class deltas, the held-out set's
fingerprint) is stored beside the candidate's metadata.json as ``promotion.json``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import InvalidInput
from inference.imagecodec import IMAGE_SUFFIXES, decode_image
from inference.labels import folder_index
from inference.metadata import ModelCard
from inference.preprocess import image_to_pixels
from inference.registry import Registry, utc_now
from inference.session import OnnxClassifier, SessionOptions

PROMOTION_FILE = "promotion.json"
POLICIES = ("if-better", "force", "never")


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: a card and the ONNX file to evaluate (a registered or a staged version)."""

    card: ModelCard
    model_file: Path
    version: int | None = None  # None while the candidate is still staged


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: int | None
    production: int | None
    candidate_accuracy: float | None
    production_accuracy: float | None
    margin: float
    heldout_images: int
    policy: str
    comparable: bool = True
    warnings: tuple[str, ...] = ()
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> images, both accuracies, delta
    heldout_fingerprint: str | None = None
    variant: str = "int8"
    decided_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        known = cls.__dataclass_fields__
        values = {k: v for k, v in data.items() if k in known}
        values["warnings"] = tuple(values.get("warnings") or ())
        return cls(**values)


def list_labelled_images(root: Path) -> list[tuple[Path, str]]:
    """``root/<folder>/<image>`` -> [(path, folder)], sorted for reproducibility."""
    out = []
    for cls_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for f in sorted(cls_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                out.append((f, cls_dir.name))
    return out


def differences(candidate: ModelCard, production: ModelCard) -> list[str]:
    """Why two versions cannot stand in for each other (empty when they can)."""
    out = []
    if candidate.labels != production.labels:
        same_set = sorted(candidate.labels) == sorted(production.labels)
        out.append(
            f"label order differs ({list(candidate.labels)} vs {list(production.labels)})" if same_set
            else f"labels differ (candidate {list(candidate.labels)}, production {list(production.labels)})"
        )
    a, b = candidate.preprocessing, production.preprocessing
    if (a.height, a.width) != (b.height, b.width):
        out.append(f"input size differs ({a.height}x{a.width} vs {b.height}x{b.width})")
    if a.channels != b.channels:
        out.append(f"channels differ ({a.channels} vs {b.channels})")
    return out


def fingerprint(images: list[tuple[Path, str]]) -> str:
    """sha256 over (class, content hash) of the held-out images, in a stable order."""
    digest = hashlib.sha256()
    for entry in sorted((label, hashlib.sha256(p.read_bytes()).hexdigest()) for p, label in images):
        digest.update(f"{entry[0]}\0{entry[1]}\n".encode())
    return digest.hexdigest()


def predictions(contender: Contender, images: list[Path], variant: str) -> np.ndarray:
    """Top-1 class index of each image file under one version (its own preprocessing)."""
    card = contender.card
    model = OnnxClassifier.load(contender.model_file, card, variant, SessionOptions(intra_op_threads=0))
    out = []
    for start in range(0, len(images), 64):
        chunk = images[start : start + 64]
        pixels = np.stack([image_to_pixels(decode_image(p.read_bytes()), card.preprocessing) for p in chunk])
        out.append(model.predict_pixels(pixels).argmax(axis=1))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _per_class(labels: tuple[str, ...], y: np.ndarray, cand: np.ndarray, prod: np.ndarray | None) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for i, label in enumerate(labels):
        mask = y == i
        if not mask.any():
            continue
        c = float((cand[mask] == i).mean())
        p = float((prod[mask] == i).mean()) if prod is not None else None
        rows[label] = {"images": int(mask.sum()), "candidate": round(c, 4),
                       "production": None if p is None else round(p, 4),
                       "delta": None if p is None else round(c - p, 4)}
    return rows


def decide(
    candidate: Contender, production: Contender | None, heldout: list[tuple[Path, str]], *,
    policy: str = "if-better", margin: float = 0.0, variant: str = "int8",
) -> Decision:
    """Evaluate both on ``heldout`` ([(file, class folder or label)], classes matched through the candidate's
    label_folders) and say whether the candidate should become production."""
    if policy not in POLICIES:
        raise InvalidInput(f"promote policy must be one of {', '.join(POLICIES)}")
    card = candidate.card
    index = folder_index({f for _, f in heldout}, card.labels, card.label_folders)
    y = np.array([index[f] for _, f in heldout], dtype=np.int64)
    files = [p for p, _ in heldout]
    cand = predictions(candidate, files, variant) if heldout else None
    diffs = differences(card, production.card) if production is not None else []
    prod = predictions(production, files, variant) if production is not None and heldout and not diffs else None
    cand_acc = float((cand == y).mean()) if cand is not None else None
    prod_acc = float((prod == y).mean()) if prod is not None else None
    record = dict(
        candidate=candidate.version, production=production.version if production else None,
        candidate_accuracy=cand_acc, production_accuracy=prod_acc, margin=margin, heldout_images=len(heldout),
        policy=policy, comparable=not diffs, variant=variant, decided_at=utc_now(),
        per_class=_per_class(card.labels, y, cand, prod) if cand is not None else {},
        heldout_fingerprint=fingerprint([(p, card.labels[i]) for p, i in zip(files, y, strict=True)]) if heldout else None,
    )
    promote, reason, warnings = _verdict(policy, margin, production, candidate, diffs, cand_acc, prod_acc)
    return Decision(promote, reason, warnings=warnings, **record)  # type: ignore[arg-type]


def _verdict(
    policy: str, margin: float, production: Contender | None, candidate: Contender, diffs: list[str],
    cand_acc: float | None, prod_acc: float | None,
) -> tuple[bool, str, tuple[str, ...]]:
    if production is None:
        return (False, "policy 'never': registered as a candidate only", ()) if policy == "never" else (
            True, "no production version yet", ())
    if production.version is not None and production.version == candidate.version:
        return False, "candidate is already production", ()
    if diffs:
        what = "; ".join(diffs)
        if policy == "force":
            warning = (f"forced although not comparable with production v{production.version}: {what}; "
                       "clients of this model name get other classes or input shapes")
            return True, warning, (warning,)
        hint = "register a new label set under a new model name, or promote it with policy 'force'"
        return False, f"not comparable with production v{production.version}: {what}; {hint}", ()
    if policy == "never":
        return False, "policy 'never': registered as a candidate only", ()
    if policy == "force":
        return True, "forced", ()
    if cand_acc is None or prod_acc is None:
        return False, "no held-out images to compare on", ()
    if cand_acc >= prod_acc + margin and (margin > 0 or cand_acc > prod_acc):
        return True, f"candidate {cand_acc:.4f} beats production {prod_acc:.4f} (margin {margin:.4f})", ()
    return False, f"candidate {cand_acc:.4f} does not beat production {prod_acc:.4f} by margin {margin:.4f}", ()


def registered(registry: Registry, name: str, version: int, variant: str = "int8") -> Contender:
    return Contender(registry.card(name, version), registry.model_file(name, version, variant), version)


def decide_registered(
    registry: Registry, name: str, candidate: int, heldout: list[tuple[Path, str]], *,
    policy: str = "if-better", margin: float = 0.0, variant: str = "int8",
) -> Decision:
    """:func:`decide` for a version already in the registry against the current production."""
    prod_version = registry.aliases(name).get("production")
    production = registered(registry, name, int(prod_version), variant) if prod_version is not None else None
    return decide(registered(registry, name, candidate, variant), production, heldout,
                  policy=policy, margin=margin, variant=variant)
