"""``imgserve retrain``: new class folders -> train -> export -> candidate -> promotion policy, here or on an
admin runner (``--via``). The pipeline lives in ``admin.retrain``; this module only maps flags to it."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from training.architectures import ARCHITECTURES
from training.config import TrainConfig

from .registry_args import add_registry_args, default_models_dir


def _command() -> str:
    if sys.argv and sys.argv[0].endswith(("imgserve", "__main__.py")):
        return shlex.join(["imgserve", *sys.argv[1:]])
    return "imgserve retrain"


def retrain_command(args: argparse.Namespace) -> int:
    from admin.retrain import RetrainOptions, retrain

    fields = {f.name for f in dataclasses.fields(RetrainOptions)} - {"data", "models_dir", "command"}
    opts = RetrainOptions(  # checks the flags, also before --via uploads anything
        data=tuple(Path(d) for d in args.data), models_dir=args.models_dir or default_models_dir(),
        command=_command(), **{k: getattr(args, k) for k in fields},
    )
    out = _via(args) if args.via else retrain(opts)
    d = out["decision"]
    int8 = out["metrics"].get("int8", float("nan"))
    print(f"{out['model']}: candidate v{out['candidate_version']} ({out['start']}; int8 acc {int8:.4f}); "
          f"{'promoted' if d['promote'] else 'not promoted'}: {d['reason']}; production is v{out['production']}")
    for warning in out.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _via(args: argparse.Namespace) -> dict[str, Any]:
    from admin.remote import run_remote

    params = {
        "model": args.name, "architecture": args.arch, "epochs": args.epochs,
        "base_version": "scratch" if args.from_scratch else args.base_version, "promote": args.promote,
        "margin": args.margin, "img_size": args.img_size,
    }
    token = args.token or os.environ.get("IMGSERVE_ADMIN_TOKEN")
    return run_remote(args.via, token, [Path(d) for d in args.data], params)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("retrain", help="train on new data, export, and promote if better (locally or --via a runner)")
    p.add_argument("--data", action="append", required=True,
                   help="folder of class folders, or a zip of them (repeatable); folder names as in the "
                   "model's label_folders (`imgserve models show NAME`) or the labels themselves")
    p.add_argument("--name", default=os.environ.get("IMGSERVE_MODEL", "fashion-mnist"),
                   help="model name in the registry (env IMGSERVE_MODEL); a new name starts a new model")
    add_registry_args(p)
    p.add_argument("--arch", default=TrainConfig.arch, choices=tuple(ARCHITECTURES),
                   help=f"architecture when training from scratch (default {TrainConfig.arch}; a warm start keeps the base's)")
    p.add_argument("--epochs", type=int, default=5, help="max epochs (default 5)")
    p.add_argument("--img-size", type=int, default=None, help="input side in pixels (default: the base version's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: about an eighth of the training images, 8..128")
    p.add_argument("--seed", type=int, default=0, help="seed for training and the validation split")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--base-version", default="auto",
                       help="warm start from this version or alias (default auto: production)")
    start.add_argument("--from-scratch", action="store_true",
                       help="train from scratch; also the way to train a new label set (subset or new classes)")
    p.add_argument("--promote", choices=("if-better", "force", "never"), default="if-better",
                   help="if-better (default): only when it beats production on the same held-out images; "
                   "force: always (warns when not comparable); never: register only")
    p.add_argument("--margin", type=float, default=0.0, help="accuracy the candidate must gain over production")
    p.add_argument("--heldout-fraction", type=float, default=0.2,
                   help="share of each class held out for the comparison (default 0.2)")
    p.add_argument("--work-dir", type=Path, default=None, help="where the run goes (default runs/retrain-<time>)")
    p.add_argument("--progress-file", type=Path, default=None, help="JSON-lines events (default WORK_DIR/progress.jsonl)")
    p.add_argument("--result-file", type=Path, default=None, help="write the outcome here as JSON")
    p.add_argument("--via", default=None, help="admin runner URL: run the job there instead of here")
    p.add_argument("--token", default=None, help="admin token for --via (default env IMGSERVE_ADMIN_TOKEN)")
    p.set_defaults(func=retrain_command)
