"""``imgserve retrain``: new data -> train (warm start or scratch) -> export -> register a candidate ->
promotion policy. The admin runner runs exactly this in a job subprocess; ``--via`` sends it to a runner.

The candidate is compared with production on held-out images that neither model trained on (a stable,
hash-based split of the uploaded files), with the ONNX variant that is served, so the decision measures
what clients would see. A run that fails or is killed at any point leaves the registry as it was: the
candidate appears only through the registry's atomic rename, and the alias only through ``os.replace``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from inference.atomic import atomic_write_json
from inference.errors import ConfigError, ImgServeError, InvalidInput, NotFound
from inference.registry import KERAS_FILE, Registry

from .models import add_registry_args, registry_from

log = logging.getLogger(__name__)



def gather_images(sources: list[Path], work: Path) -> list[tuple[Path, str]]:
    """Labelled image files from folders of class folders, or zips (validated like an admin upload)."""
    from admin.datasets import DatasetStore
    from admin.policy import list_labelled_images
    from admin.settings import AdminSettings

    items: list[tuple[Path, str]] = []
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


def split_heldout(items: list[tuple[Path, str]], fraction: float) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """A stable split by content hash: the same file is always on the same side, whatever else was uploaded.
    Every class keeps at least one training image and, if it has two or more, one held-out image."""
    by_class: dict[str, list[tuple[str, Path]]] = {}
    for path, label in items:
        digest = hashlib.sha256(label.encode() + b"\0" + path.read_bytes()).hexdigest()
        by_class.setdefault(label, []).append((digest, path))
    train: list[tuple[Path, str]] = []
    held: list[tuple[Path, str]] = []
    for label, entries in sorted(by_class.items()):
        entries.sort()
        n_held = 0 if len(entries) < 2 else max(1, min(len(entries) - 1, round(len(entries) * fraction)))
        held += [(p, label) for _, p in entries[:n_held]]
        train += [(p, label) for _, p in entries[n_held:]]
    return train, held


def link_tree(items: list[tuple[Path, str]], root: Path) -> Path:
    """Materialise ``root/<class>/<file>`` as symlinks (training reads class folders)."""
    for i, (path, label) in enumerate(items):
        target = root / label / f"{i:06d}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.symlink(path.resolve(), target)
    return root


def _event(progress_file: Path | None, **event: Any) -> None:
    if progress_file is None:
        return
    with progress_file.open("a") as fh:
        fh.write(json.dumps({"time": round(time.time(), 3), **event}) + "\n")


def _warm_start(registry: Registry, name: str, base: str, labels: list[str], strict: bool) -> tuple[str | None, int | None, str]:
    """The model.keras to start from, the parent version, and why."""
    try:
        version = registry.resolve(name, base)
    except NotFound as exc:
        if strict:
            raise
        return None, None, f"from scratch: {exc.message}"
    card = registry.card(name, version)
    keras_path = registry.fetch(name, version, KERAS_FILE)  # from object storage: a verified cached copy
    if keras_path is None:
        reason = f"version {version} has no {KERAS_FILE}"
    elif list(card.labels) != labels:  # training orders folder classes by name
        reason = f"version {version} has classes {list(card.labels)}, the data has {labels}"
    else:
        return str(keras_path), version, f"warm start from version {version}"
    if strict:
        raise ConfigError(f"cannot warm-start: {reason}; use --from-scratch")
    return None, None, f"from scratch: {reason}"


def retrain(args: argparse.Namespace) -> dict[str, Any]:
    """The whole pipeline; returns (and writes to --result-file) what happened."""
    from admin.policy import decide

    registry = registry_from(args)
    work = Path(args.work_dir or f"runs/retrain-{time.strftime('%Y%m%d-%H%M%S')}")
    work.mkdir(parents=True, exist_ok=True)
    progress = Path(args.progress_file) if args.progress_file else work / "progress.jsonl"
    items = gather_images([Path(d) for d in args.data], work)
    train_items, heldout = split_heldout(items, args.heldout_fraction)
    labels = sorted({label for _, label in items})
    if len(labels) < 2:
        raise InvalidInput(f"retraining needs at least 2 classes; the data has {labels}")
    init_from, parent, how = (None, None, "from scratch (requested)")
    if not args.from_scratch:
        init_from, parent, how = _warm_start(registry, args.name, args.base_version, labels, strict=args.base_version not in ("auto", "production"))
    log.info("retrain %s: %d images (%d train, %d held out), %d classes; %s",
             args.name, len(items), len(train_items), len(heldout), len(labels), how)
    production_before = registry.aliases(args.name).get("production") if args.name in registry.list_models() else None

    from export.pipeline import ExportOptions, export_run
    from training.train import TrainConfig, train

    command = shlex.join(["imgserve", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith(("imgserve", "__main__.py")) else "imgserve retrain"
    config = TrainConfig(
        dataset=str(link_tree(train_items, work / "train")), arch=args.arch, epochs=args.epochs,
        img_size=args.img_size, init_from=init_from, seed=args.seed, command=command,
        patience=max(1, min(5, args.epochs)),
        # uploads are often small: keep several optimiser steps per epoch (128 would mean one step for 100 images)
        batch_size=args.batch_size or min(128, max(8, len(train_items) // 8)),
    )
    result = train(config, work / "run", progress_file=progress)
    _event(progress, event="stage", stage="export")
    card = export_run(work / "run", registry, ExportOptions(name=args.name, promote=False, command=command))
    _event(progress, event="stage", stage="evaluate", candidate=card.version)
    if production_before is None:
        from admin.policy import Decision

        decision = Decision(True, "no production version yet", card.version, None, None, None, args.margin, len(heldout), args.promote)
    else:
        decision = decide(registry, args.name, card.version, heldout, policy=args.promote, margin=args.margin)
    if decision.promote and registry.aliases(args.name).get("production") != card.version:
        registry.promote(args.name, card.version, reason=decision.reason)
    out = {
        "model": args.name,
        "candidate_version": card.version,
        "parent_version": parent,
        "start": how,
        "train": {"test_accuracy": result.test_accuracy, "epochs_run": result.epochs_run, "seconds": result.train_seconds},
        "metrics": card.metrics.get("accuracy", {}),
        "decision": decision.to_dict(),
        "production": registry.aliases(args.name).get("production"),
        "heldout_images": len(heldout),
    }
    _event(progress, event="finished", candidate=card.version, promoted=decision.promote, reason=decision.reason)
    if args.result_file:
        atomic_write_json(args.result_file, out)
    return out


def via_runner(args: argparse.Namespace) -> dict[str, Any]:
    """Upload the data to an admin runner, start a job there and follow it to the end."""
    import io
    import zipfile

    import httpx

    token = args.token or os.environ.get("IMGSERVE_ADMIN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = args.via.rstrip("/")
    with httpx.Client(timeout=120, headers=headers) as client:
        ids = []
        for src in map(Path, args.data):
            if src.is_dir():
                buf = io.BytesIO()
                with zipfile.ZipFile(buf, "w") as zf:
                    for path in sorted(src.rglob("*")):
                        if path.is_file():
                            zf.write(path, path.relative_to(src).as_posix())
                payload = buf.getvalue()
            elif src.is_file():
                payload = src.read_bytes()
            else:
                raise InvalidInput(f"--data {src}: no such file or folder")
            ids.append(_checked(client.post(f"{base}/datasets", files={"file": (src.name + ".zip", payload, "application/zip")}))["id"])
        job = _checked(client.post(f"{base}/jobs", json={
            "datasets": ids, "model": args.name, "architecture": args.arch, "epochs": args.epochs,
            "base_version": "scratch" if args.from_scratch else args.base_version, "promote": args.promote,
            "margin": args.margin, "img_size": args.img_size,
        }))
        print(f"job {job['id']} queued on {base}", flush=True)
        seen = 0
        while True:
            job = _checked(client.get(f"{base}/jobs/{job['id']}"))
            for event in job.get("history", [])[seen:]:
                if event.get("event") == "epoch":
                    m = event.get("metrics", {})
                    print(f"  epoch {event['epoch']}/{event['epochs']}: acc {m.get('accuracy', 0):.4f} val_acc {m.get('val_accuracy', 0):.4f}", flush=True)
            seen = len(job.get("history", []))
            if job["state"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(2)
    if job["state"] != "succeeded":
        raise ImgServeError(f"job {job['id']} {job['state']}: {job.get('error')}")
    return job["result"]


def _checked(r: Any) -> Any:
    if r.status_code >= 400:
        try:
            message = r.json().get("error", r.text)
        except ValueError:
            message = r.text
        raise ImgServeError(f"admin runner answered {r.status_code}: {message}")
    return r.json()


def retrain_command(args: argparse.Namespace) -> int:
    out = via_runner(args) if args.via else retrain(args)
    d = out["decision"]
    print(f"{out['model']}: candidate v{out['candidate_version']} "
          f"(int8 acc {out['metrics'].get('int8', float('nan')):.4f}); "
          f"{'promoted' if d['promote'] else 'not promoted'}: {d['reason']}; production is v{out['production']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="train on new data, export, and promote if better (locally or --via a runner)")
    p.add_argument("--data", action="append", required=True, help="folder of class folders, or a zip of them (repeatable)")
    p.add_argument("--name", default=os.environ.get("IMGSERVE_MODEL", "fashion-mnist"), help="model name in the registry")
    add_registry_args(p)
    p.add_argument("--arch", default="small-cnn", choices=("small-cnn", "mobilenetv2"))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--img-size", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="default: about an eighth of the training images, 8..128")
    p.add_argument("--seed", type=int, default=0)
    start = p.add_mutually_exclusive_group()
    start.add_argument("--base-version", default="auto",
                       help="warm start from this version or alias; 'auto' (default) falls back to scratch when incompatible")
    start.add_argument("--from-scratch", action="store_true")
    p.add_argument("--promote", choices=("if-better", "force", "never"), default="if-better")
    p.add_argument("--margin", type=float, default=0.0, help="accuracy the candidate must gain over production")
    p.add_argument("--heldout-fraction", type=float, default=0.2)
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--progress-file", type=Path, default=None)
    p.add_argument("--result-file", type=Path, default=None)
    p.add_argument("--via", default=None, help="admin runner URL: run the job there instead of here")
    p.add_argument("--token", default=None, help="admin token for --via (default env IMGSERVE_ADMIN_TOKEN)")
    p.set_defaults(func=retrain_command)
