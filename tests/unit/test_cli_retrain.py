"""``imgserve retrain``'s expected failures are one error line and exit code 2, never a traceback: an
unreachable ``--via`` runner (it used to print httpx.ConnectError's traceback), data whose class folders do
not match the model's (with the known folder names), missing data. Real subprocesses, no TensorFlow."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.registry import Registry
from tests.fixtures import register_tiny

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _imgserve(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imgserve", *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)


def _data(root: Path, names: list[str], per_class: int = 3) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((28, 28), 40 * i, np.uint8), "L").save(root / name / f"{i}.png")
    return root


def test_unreachable_via_url_is_one_line_without_traceback(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    r = _imgserve("retrain", "--via", url, "--data", str(_data(tmp_path / "d", ["a", "b"])))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"imgserve retrain: error: cannot reach the admin runner at {url}")


def test_folders_that_do_not_match_the_model_are_refused_with_its_folder_names(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "models")
    register_tiny(registry, classes=2, labels=("T-shirt/top", "Bag"))
    r = _imgserve("retrain", "--models-dir", str(registry.root), "--name", "tiny", "--work-dir", str(tmp_path / "w"),
                  "--data", str(_data(tmp_path / "d", ["Bag", "Hat"])))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "match no label" in last and "'T-shirt_top', 'Bag'" in last and "--from-scratch" in last
    assert registry.list_versions("tiny") == [1]


def test_missing_data_is_one_line(tmp_path: Path) -> None:
    r = _imgserve("retrain", "--models-dir", str(tmp_path / "m"), "--work-dir", str(tmp_path / "w"),
                  "--data", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no such file or folder" in r.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--margin", "2"], "margin must be in [0, 1)"),
        (["--margin", "-0.1"], "margin must be in [0, 1)"),
        (["--img-size", "0"], "image size must be >= 1"),
        (["--via", "http://127.0.0.1:9", "--epochs", "0"], "epochs must be >= 1"),  # before any upload
    ],
)
def test_bad_flags_are_refused_before_the_data_is_read(tmp_path: Path, flags: list[str], message: str) -> None:
    r = _imgserve("retrain", "--models-dir", str(tmp_path / "m"), "--data", str(tmp_path / "nothing"), *flags)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().startswith(f"imgserve retrain: error: {message}"), r.stderr  # the one line there is


def test_too_few_images_per_class_counts_what_was_uploaded(tmp_path: Path) -> None:
    """3 images of a class used to be refused as 'dataset upload: ... too few in Bag (2)': one had gone to the
    held-out set and the message named the folder of symlinks training reads."""
    r = _imgserve("retrain", "--models-dir", str(tmp_path / "m"), "--name", "new", "--work-dir", str(tmp_path / "w"),
                  "--data", str(_data(tmp_path / "d", ["Bag", "Hat"])))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "retraining needs at least 4 images per class (1 held out" in r.stderr and "'Bag' (3), 'Hat' (3)" in r.stderr


def test_a_work_dir_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    r = _imgserve("retrain", "--models-dir", str(tmp_path / "m"), "--work-dir", str(tmp_path / "afile"),
                  "--data", str(_data(tmp_path / "d", ["a", "b"])))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == f"imgserve retrain: error: cannot write the work directory {tmp_path / 'afile'}: it is a file"
