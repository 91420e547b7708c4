"""Promote-if-better (issue 15): both versions are scored on the same held-out images with the same label
order; a candidate with other labels, input size or channels is never promoted by 'if-better', and 'force'
promotes it only with a warning. Real ONNX models (tiny, built by the fixtures), real image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from admin.policy import Decision, decide_registered, fingerprint, list_labelled_images
from admin.retrain import RetrainOptions, plan_start
from inference.errors import InvalidInput
from inference.registry import Registry
from tests.fixtures import register_tiny

LABELS = ("T-shirt/top", "Trouser", "Bag")


def _folders(root: Path, names: list[str], per_class: int = 4, size: int = 28) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), "L").save(root / name / f"{i}.png")
    return root


@pytest.fixture()
def reg(registry: Registry) -> Registry:
    register_tiny(registry, classes=3, labels=LABELS, seed=1)  # v1, production
    return registry


def test_comparable_candidate_is_scored_on_the_same_images_with_per_class_deltas(reg: Registry, tmp_path: Path) -> None:
    register_tiny(reg, classes=3, labels=LABELS, seed=2)  # v2
    images = list_labelled_images(_folders(tmp_path / "d", ["T-shirt_top", "Trouser", "Bag"]))
    d = decide_registered(reg, "tiny", 2, images, policy="if-better")
    assert d.comparable and d.production == 1 and d.candidate == 2 and d.heldout_images == 12
    assert d.candidate_accuracy is not None and d.production_accuracy is not None
    assert set(d.per_class) == set(LABELS) and all(r["images"] == 4 for r in d.per_class.values())
    for r in d.per_class.values():
        assert r["delta"] == pytest.approx(r["candidate"] - r["production"], abs=1e-3)
    mean_delta = np.mean([r["delta"] for r in d.per_class.values()])
    assert mean_delta == pytest.approx(d.candidate_accuracy - d.production_accuracy, abs=1e-3)
    assert d.heldout_fingerprint == fingerprint([(p, LABELS[["T-shirt_top", "Trouser", "Bag"].index(f)]) for p, f in images])
    assert d.promote == (d.candidate_accuracy > d.production_accuracy) and not d.warnings
    assert Decision.from_dict(d.to_dict()) == d


def test_same_model_does_not_beat_itself(reg: Registry, tmp_path: Path) -> None:
    register_tiny(reg, classes=3, labels=LABELS, seed=1)  # v2 == v1's weights
    images = list_labelled_images(_folders(tmp_path / "d", ["T-shirt_top", "Trouser", "Bag"]))
    d = decide_registered(reg, "tiny", 2, images)
    assert d.candidate_accuracy == d.production_accuracy and not d.promote and "does not beat" in d.reason


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [({"classes": 2, "labels": ("noise", "other")}, "labels differ"),
     ({"classes": 3, "labels": ("Trouser", "T-shirt/top", "Bag")}, "label order differs"),
     ({"classes": 3, "labels": LABELS, "height": 14, "width": 14}, "input size differs"),
     ({"classes": 3, "labels": LABELS, "channels": 3}, "channels differ")],
)
def test_non_comparable_candidate_is_never_promoted_if_better_and_forced_only_with_a_warning(
    reg: Registry, tmp_path: Path, kwargs: dict, why: str
) -> None:
    cand = register_tiny(reg, **kwargs)
    names = list(cand.label_folders)
    images = list_labelled_images(_folders(tmp_path / "d", names, size=cand.preprocessing.height))
    d = decide_registered(reg, "tiny", 2, images, policy="if-better")
    assert not d.promote and not d.comparable and why in d.reason and d.production_accuracy is None
    assert d.candidate_accuracy is not None and not d.warnings
    forced = decide_registered(reg, "tiny", 2, images, policy="force")
    assert forced.promote and forced.warnings and why in forced.warnings[0]


def test_plan_start_matches_folders_and_refuses_subsets_and_new_classes(reg: Registry, tmp_path: Path) -> None:
    opts = RetrainOptions(data=(), name="tiny", models_dir=reg.root)
    start = plan_start(reg, opts, ["Bag", "T-shirt_top", "Trouser"])  # tiny has no model.keras
    assert start.labels_from and start.init_from is None and start.shape == (28, 1) and "labels of v1" in start.how
    assert plan_start(reg, opts, ["Bag", "T-shirt/top", "Trouser"]).labels_from  # the label itself is fine too
    for folders, msg in ((["Bag", "Trouser"], "no folder for"), (["Bag", "T-shirt_top", "Trouser", "Hat"], "match no label")):
        with pytest.raises(InvalidInput, match=msg) as exc:
            plan_start(reg, opts, folders)
        assert "'T-shirt_top', 'Trouser', 'Bag'" in exc.value.message and "--from-scratch" in exc.value.message
    new = plan_start(reg, RetrainOptions(data=(), name="tiny", models_dir=reg.root, from_scratch=True), ["Bag", "Hat"])
    assert new.init_from is None and new.labels_from is None and "new label set" in new.how
    fresh = plan_start(reg, RetrainOptions(data=(), name="other", models_dir=reg.root), ["x", "y"])
    assert "new model" in fresh.how
