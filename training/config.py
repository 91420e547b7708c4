"""Every training knob in one frozen dataclass (``TrainConfig``, stored with the run and the version), and
what a run returns (``RunResult``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.errors import ConfigError

from .precision import PRECISIONS


@dataclass(frozen=True)
class TrainConfig:
    """Every training knob. The defaults are v1's recipe (small-cnn, no augmentation): quick on any data set.
    The shipped default (v3) adds ``--arch vgg3 --label-smoothing 0.1 --augment --precision bfloat16
    --tta-flip``; every version's metadata records the command that made it."""

    dataset: str = "fashion-mnist"  # fashion-mnist | digits | path to a folder/zip of class folders
    arch: str = "small-cnn"
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 2e-3  # peak; cosine decay to 1 % over the run (or the time budget)
    label_smoothing: float = 0.0
    dropout: float = 0.3
    patience: int = 5  # early stopping on validation accuracy (best weights restored)
    img_size: int | None = None  # None: the dataset's own size (folders: the architecture's default)
    channels: int | None = None  # None: the dataset's own (folders: 3)
    alpha: float = 1.0  # mobilenetv2 width
    weights: str | None = None  # local backbone weights file (mobilenetv2)
    init_from: str | None = None  # a model.keras to warm-start from (retraining)
    # A registry version dir (or its metadata.json) whose labels and label_folders fix a folder set's classes
    # when training from scratch: the new model is then comparable with that version. Implied by init_from.
    labels_from: str | None = None
    # Off by default: within a 15-epoch budget random flips/shifts slowed Fashion-MNIST convergence
    # (20k images, 8 epochs: 91.1 % without, 87.8 % with flips + 2 px shifts); they help small photo sets.
    augment: bool = False
    flip: bool | None = None  # None: when the dataset's labels survive a mirror (not digits)
    shift: float = 0.08  # max random translation, as a fraction of the image side (2 px at 28)
    val_fraction: float = 0.1
    test_fraction: float = 0.15  # ignored for fashion-mnist (official test set)
    max_train_samples: int | None = None  # a stratified subset, for quick tuning runs
    # Anneal the learning rate by this many minutes and stop before an epoch would overrun them.
    time_budget_minutes: float | None = None
    # bfloat16: compute in bfloat16 while training (float32 weights; the saved model is float32). Faster only on
    # CPUs with bfloat16 units (AVX512_BF16, AMX): 1.2x on the 2-vCPU AVX-512 machine; elsewhere expect
    # it to be slower (emulated; not measured: the machines here had them).
    precision: str = "float32"
    # Average each test image's probabilities with its mirror image's (evaluation and the exported model; twice
    # the model time per image). Inherited from a warm-start parent that had it.
    tta_flip: bool = False
    calibration_samples: int = 1000  # training images kept for INT8 calibration
    seed: int = 0
    command: str = ""  # the CLI command that started the run, for metadata

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch size must be >= 1"),
            (self.learning_rate > 0, "learning rate must be > 0"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.patience >= 1, "patience must be >= 1"),
            (self.img_size is None or self.img_size >= 1, "image size must be >= 1"),
            (self.channels in (None, 1, 3), "channels must be 1 or 3"),
            (self.alpha > 0, "alpha must be > 0"),
            (0 <= self.shift < 0.5, "shift must be in [0, 0.5)"),
            (
                0 < self.val_fraction < 0.5 and 0 < self.test_fraction < 0.5,
                "split fractions must be in (0, 0.5)",
            ),
            (
                self.max_train_samples is None or self.max_train_samples >= 10,
                "max train samples must be >= 10",
            ),
            (self.time_budget_minutes is None or self.time_budget_minutes > 0, "time budget must be > 0"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.calibration_samples >= 1, "calibration samples must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    test_accuracy: float
    train_seconds: float
    epochs_run: int
    summary: dict[str, Any]
