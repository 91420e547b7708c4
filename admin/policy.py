"""Promotion policy: a candidate becomes production only if it beats production on the same held-out
images by at least ``margin`` (accuracy), unless forced. Evaluation runs the ONNX variant that is served
(TF-free), with the shared preprocessing, so the comparison measures what clients would get."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import InvalidInput
from inference.imagecodec import IMAGE_SUFFIXES, decode_image
from inference.preprocess import image_to_pixels
from inference.registry import Registry
from inference.session import OnnxClassifier, SessionOptions


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: int
    production: int | None
    candidate_accuracy: float | None
    production_accuracy: float | None
    margin: float
    heldout_images: int
    policy: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_labelled_images(root: Path) -> list[tuple[Path, str]]:
    """``root/<class>/<image>`` -> [(path, class)], sorted for reproducibility."""
    out = []
    for cls_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        for f in sorted(cls_dir.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                out.append((f, cls_dir.name))
    return out


def accuracy_on(registry: Registry, name: str, version: int, images: list[tuple[Path, str]], variant: str = "int8") -> float:
    """Top-1 accuracy of one registered version on labelled image files (labels matched by name)."""
    card = registry.card(name, version)
    model = OnnxClassifier.load(registry.model_file(name, version, variant), card, variant, SessionOptions(intra_op_threads=0))
    index = {label: i for i, label in enumerate(card.labels)}
    missing = sorted({lbl for _, lbl in images if lbl not in index})
    if missing:
        raise InvalidInput(f"version {version} of {name} does not know the classes {missing}; it cannot be compared")
    correct = 0
    for start in range(0, len(images), 64):
        chunk = images[start : start + 64]
        pixels = np.stack([image_to_pixels(decode_image(p.read_bytes()), card.preprocessing) for p, _ in chunk])
        pred = model.predict_pixels(pixels).argmax(axis=1)
        correct += int(sum(int(p) == index[lbl] for p, (_, lbl) in zip(pred, chunk, strict=True)))
    return correct / max(1, len(images))


def decide(
    registry: Registry, name: str, candidate: int, heldout: list[tuple[Path, str]], *,
    policy: str = "if-better", margin: float = 0.0, variant: str = "int8",
) -> Decision:
    """Compare ``candidate`` with the current production on ``heldout`` and say whether to promote."""
    aliases = registry.aliases(name)
    production = aliases.get("production")
    production = int(production) if production is not None else None
    cand_acc = accuracy_on(registry, name, candidate, heldout, variant) if heldout else None
    prod_acc = None
    common = dict(candidate=candidate, production=production, margin=margin, heldout_images=len(heldout), policy=policy)
    if production is not None and production != candidate and heldout:
        try:
            prod_acc = accuracy_on(registry, name, production, heldout, variant)
        except InvalidInput as exc:
            if policy == "force":
                return Decision(True, f"forced; production not comparable: {exc.message}", candidate_accuracy=cand_acc, production_accuracy=None, **common)
            return Decision(False, f"not comparable: {exc.message}", candidate_accuracy=cand_acc, production_accuracy=None, **common)
    if policy == "never":
        return Decision(False, "policy 'never': registered as a candidate only", candidate_accuracy=cand_acc, production_accuracy=prod_acc, **common)
    if policy == "force":
        return Decision(True, "forced", candidate_accuracy=cand_acc, production_accuracy=prod_acc, **common)
    if production is None:
        return Decision(True, "no production version yet", candidate_accuracy=cand_acc, production_accuracy=None, **common)
    if production == candidate:
        return Decision(False, "candidate is already production", candidate_accuracy=cand_acc, production_accuracy=prod_acc, **common)
    if cand_acc is None or prod_acc is None:
        return Decision(False, "no held-out images to compare on", candidate_accuracy=cand_acc, production_accuracy=prod_acc, **common)
    if cand_acc >= prod_acc + margin and (margin > 0 or cand_acc > prod_acc):
        return Decision(
            True, f"candidate {cand_acc:.4f} beats production {prod_acc:.4f} (margin {margin:.4f})",
            candidate_accuracy=cand_acc, production_accuracy=prod_acc, **common,
        )
    return Decision(
        False, f"candidate {cand_acc:.4f} does not beat production {prod_acc:.4f} by margin {margin:.4f}",
        candidate_accuracy=cand_acc, production_accuracy=prod_acc, **common,
    )
