"""``imgserve train``: train a classifier into a run directory (then ``imgserve export`` registers it)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from inference.cpuinfo import has_bfloat16
from training.architectures import ARCHITECTURES
from training.datasets import DATASET_NAMES
from training.precision import PRECISIONS
from training.train import TrainConfig

# option -> TrainConfig field; the first five always appear in the recorded command, others when not default
_OPTIONS = {
    "--dataset": "dataset",
    "--arch": "arch",
    "--epochs": "epochs",
    "--batch-size": "batch_size",
    "--seed": "seed",
    "--img-size": "img_size",
    "--channels": "channels",
    "--alpha": "alpha",
    "--weights": "weights",
    "--init-from": "init_from",
    "--labels-from": "labels_from",
    "--learning-rate": "learning_rate",
    "--patience": "patience",
    "--label-smoothing": "label_smoothing",
    "--max-train-samples": "max_train_samples",
    "--time-budget-min": "time_budget_minutes",
    "--shift": "shift",
    "--precision": "precision",
}


# switch -> TrainConfig field (bool)
_SWITCHES = {"--augment": "augment", "--tta-flip": "tta_flip"}


def command_line(config: TrainConfig, out: Path) -> str:
    """The command that reproduces this run, recorded in the model's metadata."""
    words = ["imgserve", "train"]
    for i, (option, name) in enumerate(_OPTIONS.items()):
        value = getattr(config, name)
        if i < 5 or value != getattr(TrainConfig, name):
            words += [option, str(value)]
    words += [switch for switch, name in _SWITCHES.items() if getattr(config, name)]
    return shlex.join([*words, "--out", str(out)])


def train_command(args: argparse.Namespace) -> int:
    from training.train import train

    values = {
        name: getattr(args, option[2:].replace("-", "_")) for option, name in (_OPTIONS | _SWITCHES).items()
    }
    config = TrainConfig(**values)
    config = TrainConfig(**{**config.to_dict(), "command": command_line(config, args.out)})
    result = train(config, args.out, progress_file=args.progress_file)
    s = result.summary
    print(
        f"test accuracy {result.test_accuracy:.4f} on {s['test_images']} {s['test_source']} test images; "
        f"{result.epochs_run} epochs in {result.train_seconds:.0f}s -> {result.run_dir}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig
    p = sub.add_parser("train", help="train a classifier into a run directory (Keras; needs the train extra)")
    p.add_argument(
        "--dataset",
        default=d.dataset,
        help=f"{' | '.join(DATASET_NAMES)} | a folder (or zip) of class folders (default {d.dataset})",
    )
    p.add_argument("--arch", default=d.arch, help=f"{' | '.join(ARCHITECTURES)} (default {d.arch})")
    p.add_argument("--epochs", type=int, default=d.epochs, help="max epochs (early stopping on val accuracy)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"images per step (default {d.batch_size})")
    p.add_argument("--img-size", type=int, default=None, help="input side in pixels (default: the dataset's)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 grayscale, 3 RGB")
    p.add_argument("--alpha", type=float, default=d.alpha, help="mobilenetv2 width multiplier")
    p.add_argument(
        "--weights", default=None, help="local backbone weights file (mobilenetv2; never downloaded)"
    )
    p.add_argument(
        "--init-from", default=None, help="warm start from a model.keras (or a registry version dir)"
    )
    p.add_argument(
        "--labels-from",
        default=None,
        help="a registry version dir: match class folders to its labels (label_folders) and keep its order",
    )
    p.add_argument(
        "--learning-rate", type=float, default=d.learning_rate, help=f"peak Adam rate, cosine-annealed (default {d.learning_rate})"
    )
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="0 (default) to <1")
    p.add_argument(
        "--max-train-samples", type=int, default=None, help="train on a stratified subset (tuning)"
    )
    p.add_argument(
        "--augment", action="store_true", help="random flips (where labels allow) and small shifts"
    )
    p.add_argument(
        "--shift",
        type=float,
        default=d.shift,
        help=f"with --augment: max random translation as a fraction of the image side (default {d.shift}; 0: none)",
    )
    p.add_argument(
        "--tta-flip",
        action="store_true",
        help="answer with the mean of each image's and its mirror image's probabilities (twice the model time;"
        " labels must survive a mirror image)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=d.precision,
        help="bfloat16: compute in bfloat16 while training, float32 model out; meant for CPUs with "
        f"bfloat16 units (AVX512_BF16, AMX){' such as this one' if has_bfloat16() else ''} (default {d.precision})",
    )
    p.add_argument(
        "--time-budget-min",
        type=float,
        default=None,
        help="stop before an epoch would overrun this many minutes (best epoch kept)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed for weights, shuffling and splits")
    p.add_argument(
        "--progress-file", type=Path, default=None, help="JSON-lines events (default OUT/progress.jsonl)"
    )
    p.add_argument("--out", type=Path, required=True, help="run directory to write")
    p.set_defaults(func=train_command)
