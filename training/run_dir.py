"""A finished run directory: the files ``training.train`` writes that export reads, and ``load_run``, which
reads them back with one clear error for a run that is missing, unfinished or damaged."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from inference.errors import ConfigError
from inference.metadata import Preprocessing
from inference.registry import KERAS_FILE

from .parent import tuples
from .progress import load_during

SUMMARY_FILE = "summary.json"  # written last: its presence marks the run finished
HELDOUT_FILE = "heldout.npz"
CURVES_FILE = "training_curves.png"

# What export reads of a finished run (besides summary.json, written last)
RUN_FILES = (KERAS_FILE, HELDOUT_FILE, "config.json", "labels.json", "preprocessing.json", "dataset.json",
             "evaluation.json")


def load_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The pieces of a finished run that export needs; a clear error for a missing or unfinished run."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run directory {run} not found (create it with `imgserve train --out {run}`)")
    if not (run / SUMMARY_FILE).is_file():
        raise ConfigError(f"run directory {run} is incomplete: training did not finish (no {SUMMARY_FILE})")
    missing = [n for n in RUN_FILES if not (run / n).is_file()]
    if missing:
        raise ConfigError(f"run directory {run} is incomplete: no {', '.join(missing)}; train it again")

    def read(name: str) -> Any:
        try:
            return json.loads((run / name).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"run directory {run}: {name} cannot be read ({exc}); train it again") from None

    return {
        "config": read("config.json"),
        "labels": tuple(read("labels.json")),
        "label_folders": tuple(read("label_folders.json")) if (run / "label_folders.json").is_file() else (),
        "preprocessing": Preprocessing(**tuples(read("preprocessing.json"))),
        "dataset": read("dataset.json"),
        "summary": read(SUMMARY_FILE),
        "evaluation": read("evaluation.json"),
        "history": read("history.json") if (run / "history.json").is_file() else {},
        "load_during_training": load_during(run / "progress.jsonl"),
        "keras_path": run / KERAS_FILE,
        "heldout_path": run / HELDOUT_FILE,
    }
