"""The retraining pipeline (``imgserve retrain``, and what an admin job runs in its subprocess): new class
folders -> train (warm start from production, or from scratch) -> export into a staged version -> compare
with production -> register the candidate with its decision -> promote when the policy says so.

Classes are matched to the model's labels through its ``label_folders`` (``T-shirt_top`` stands for
``T-shirt/top``), never by sorted folder order. Data that is a subset of the classes, or brings a new one,
is refused with the model's folder names, unless a new label set is asked for with ``from_scratch``; such a
candidate is then never promoted by ``if-better`` (see admin.policy).

The candidate is compared with production on held-out images that neither trained on (a stable, hash-based
split of the uploaded files), with the served ONNX variant, before it is registered: the decision is written
as ``promotion.json`` inside the staged version, so it is as immutable as the model. A run that fails or is
killed at any point leaves the registry as it was (atomic version rename, atomic alias write).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.atomic import atomic_write_json
from inference.errors import ConfigError, InvalidInput
from inference.labels import match_folders
from inference.registry import KERAS_FILE, METADATA_FILE, VARIANT_FILES, Registry
from training.config import TrainConfig

from .policy import POLICIES, PROMOTION_FILE, Contender, Decision, decide, list_labelled_images, registered

log = logging.getLogger(__name__)

Items = list[tuple[Path, str]]  # (image file, class folder)


@dataclass(frozen=True)
class RetrainOptions:
    """Every knob of a retrain run (the CLI's flags, an admin job's parameters)."""

    data: tuple[Path, ...]
    name: str
    models_dir: Path
    arch: str = TrainConfig.arch  # for training from scratch; a warm start keeps the base's
    epochs: int = 5
    img_size: int | None = None
    batch_size: int | None = None
    seed: int = 0
    base_version: str = "auto"  # a version or alias to warm-start from; auto = production
    from_scratch: bool = False  # also: the way to ask for a new label set
    promote: str = "if-better"
    margin: float = 0.0
    heldout_fraction: float = 0.2
    work_dir: Path | None = None
    progress_file: Path | None = None
    result_file: Path | None = None
    command: str = "imgserve retrain"

    def __post_init__(self) -> None:  # bad flags fail before the data is read, not after
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (0 <= self.margin < 1, "margin must be in [0, 1): an accuracy the candidate must beat production by"),
            (self.img_size is None or self.img_size >= 1, "image size must be >= 1"),
            (self.batch_size is None or self.batch_size >= 1, "batch size must be >= 1"),
            (0 < self.heldout_fraction < 1, "held-out fraction must be in (0, 1)"),
            (self.promote in POLICIES, f"promote policy must be one of {', '.join(POLICIES)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


@dataclass(frozen=True)
class Start:
    """How training starts: from which weights, with whose label order, and why."""

    how: str
    init_from: str | None = None
    labels_from: str | None = None
    parent: int | None = None
    shape: tuple[int, int] | None = None  # (side, channels) to keep when training from scratch


def gather_images(sources: tuple[Path, ...], work: Path) -> Items:
    """Labelled image files from folders of class folders, or zips (validated like an admin upload)."""
    from .datasets import DatasetStore
    from .settings import AdminSettings

    items: Items = []
    for src in sources:
        if not src.exists():
            raise InvalidInput(f"--data {src}: no such file or folder")
        if src.is_file():
            store = DatasetStore(AdminSettings(data_dir=work / "uploads"))
            info = store.ingest_zip(src.read_bytes())
            src = store.images_dir(info.id)
        items += list_labelled_images(src)
    if not items:
        raise InvalidInput("no images found in --data (expected <class>/<image> files)")
    return items


def split_heldout(items: Items, fraction: float) -> tuple[Items, Items]:
    """A stable split by content hash: the same file is always on the same side, whatever else was uploaded.
    Every class keeps at least one training image and, if it has two or more, one held-out image."""
    by_class: dict[str, list[tuple[str, Path]]] = {}
    for path, label in items:
        digest = hashlib.sha256(label.encode() + b"\0" + path.read_bytes()).hexdigest()
        by_class.setdefault(label, []).append((digest, path))
    train: Items = []
    held: Items = []
    for label, entries in sorted(by_class.items()):
        entries.sort()
        n_held = 0 if len(entries) < 2 else max(1, min(len(entries) - 1, round(len(entries) * fraction)))
        held += [(p, label) for _, p in entries[:n_held]]
        train += [(p, label) for _, p in entries[n_held:]]
    return train, held


def check_class_sizes(items: Items, train_items: Items) -> None:
    """Each class must keep enough images for training once its held-out ones are set aside; said in terms
    of what was uploaded (training itself would name the folder of symlinks it reads and count only those)."""
    from collections import Counter

    from training.datasets import MIN_IMAGES_PER_CLASS

    uploaded, kept = Counter(f for _, f in items), Counter(f for _, f in train_items)
    few = [f"{folder!r} ({uploaded[folder]})" for folder in sorted(uploaded) if kept[folder] < MIN_IMAGES_PER_CLASS]
    if few:
        raise InvalidInput(
            f"retraining needs at least {MIN_IMAGES_PER_CLASS + 1} images per class (1 held out to compare with "
            f"production, {MIN_IMAGES_PER_CLASS} to train, validate and test); too few in {', '.join(few)}"
        )


def link_tree(items: Items, root: Path) -> Path:
    """Materialise ``root/<class folder>/<file>`` as symlinks (training reads class folders)."""
    for i, (path, folder) in enumerate(items):
        target = root / folder / f"{i:06d}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.symlink(path.resolve(), target)
    return root


def plan_start(registry: Registry, opts: RetrainOptions, folders: list[str]) -> Start:
    """Warm start when the folders match the base version's labels; a clear refusal when they do not,
    unless a new label set was asked for (``from_scratch``)."""
    if opts.name not in registry.list_models():
        return Start(f"from scratch: {opts.name!r} is a new model")
    ref = "production" if opts.base_version == "auto" else opts.base_version
    version = registry.resolve(opts.name, ref)
    card = registry.card(opts.name, version)
    try:
        match_folders(folders, card.labels, card.label_folders)
    except InvalidInput as exc:
        if not opts.from_scratch:
            raise InvalidInput(
                f"cannot retrain {opts.name} v{version} on this data: {exc.message}. To train a new label set, "
                "ask for it from scratch (--from-scratch; admin job base_version 'scratch'): it is not "
                "comparable with production, so give it a new --name, or promote it with 'force'"
            ) from None
        return Start(f"from scratch with a new label set {folders}")
    meta = registry.fetch(opts.name, version, METADATA_FILE)  # a local copy also from object storage
    labels_from = str(meta) if meta else None
    pre = card.preprocessing
    shape = (pre.height, pre.channels) if pre.height == pre.width else None
    if opts.from_scratch:
        return Start(f"from scratch with the labels of v{version} (requested)", labels_from=labels_from, shape=shape)
    keras_path = registry.fetch(opts.name, version, KERAS_FILE)
    if keras_path is not None:  # its metadata.json lies beside it (local registry and S3 cache alike)
        return Start(f"warm start from v{version}", init_from=str(keras_path.parent), parent=version)
    if opts.base_version not in ("auto", "production"):
        raise ConfigError(f"cannot warm-start from v{version}: it has no {KERAS_FILE}; use --from-scratch")
    return Start(f"from scratch with the labels of v{version} (it has no {KERAS_FILE})", labels_from=labels_from, shape=shape)


def _event(progress_file: Path, **event: Any) -> None:
    with progress_file.open("a") as fh:
        fh.write(json.dumps({"time": round(time.time(), 3), **event}) + "\n")


def _production(registry: Registry, name: str) -> Contender | None:
    version = registry.aliases(name).get("production") if name in registry.list_models() else None
    return registered(registry, name, int(version)) if version is not None else None


def retrain(opts: RetrainOptions) -> dict[str, Any]:
    """The whole pipeline; returns (and writes to ``result_file``) what happened."""
    from export.pipeline import ExportOptions, stage_run
    from training.progress import step
    from training.runfiles import make_dir
    from training.train import train

    registry = Registry(opts.models_dir)
    work = make_dir(Path(opts.work_dir or f"runs/retrain-{time.strftime('%Y%m%d-%H%M%S')}"), "the work directory")
    progress = opts.progress_file or work / "progress.jsonl"
    with step("read the data"):
        items = gather_images(opts.data, work)
    folders = sorted({f for _, f in items})
    if len(folders) < 2:
        raise InvalidInput(f"retraining needs at least 2 classes; the data has {folders}")
    start = plan_start(registry, opts, folders)
    train_items, heldout = split_heldout(items, opts.heldout_fraction)
    check_class_sizes(items, train_items)
    log.info("retrain %s: %d images (%d train, %d held out), %d class folders; %s",
             opts.name, len(items), len(train_items), len(heldout), len(folders), start.how)
    production = _production(registry, opts.name)
    side, channels = (opts.img_size, None) if opts.img_size or start.shape is None else start.shape
    config = TrainConfig(
        dataset=str(link_tree(train_items, work / "upload")), arch=opts.arch, epochs=opts.epochs,
        img_size=side, channels=channels, init_from=start.init_from, labels_from=start.labels_from,
        seed=opts.seed, command=opts.command, patience=max(1, min(5, opts.epochs)),
        # uploads are often small: keep several optimiser steps per epoch (128 would mean one step for 100 images)
        batch_size=opts.batch_size or min(128, max(8, len(train_items) // 8)),
    )
    result = train(config, work / "run", progress_file=progress)
    _event(progress, event="stage", stage="export")
    with registry.stage(opts.name) as staged:
        card = stage_run(work / "run", staged, ExportOptions(name=opts.name, promote=False))
        _event(progress, event="stage", stage="evaluate")
        with step(f"compare with production on {len(heldout)} held-out images"):
            candidate = Contender(card, staged / VARIANT_FILES["int8"])
            decision = decide(candidate, production, heldout, policy=opts.promote, margin=opts.margin)
        atomic_write_json(staged / PROMOTION_FILE, decision.to_dict())
        card = registry.register(staged, card)
    decision = dataclasses.replace(decision, candidate=card.version)
    if decision.promote and registry.aliases(opts.name).get("production") != card.version:
        registry.promote(opts.name, card.version, reason=decision.reason)
    for warning in decision.warnings:
        log.warning("%s", warning)
    return _finish(opts, registry, card, start, result, decision, len(heldout), progress)


def _finish(opts: RetrainOptions, registry: Registry, card: Any, start: Start, result: Any,
            decision: Decision, heldout: int, progress: Path) -> dict[str, Any]:
    out = {
        "model": opts.name,
        "candidate_version": card.version,
        "parent_version": start.parent,
        "start": start.how,
        "train": {"test_accuracy": result.test_accuracy, "epochs_run": result.epochs_run, "seconds": result.train_seconds},
        "metrics": card.metrics.get("accuracy", {}),
        "decision": decision.to_dict(),
        "warnings": list(decision.warnings),
        "production": registry.aliases(opts.name).get("production"),
        "heldout_images": heldout,
    }
    _event(progress, event="finished", candidate=card.version, promoted=decision.promote, reason=decision.reason)
    if opts.result_file:
        atomic_write_json(opts.result_file, out)
    return out

