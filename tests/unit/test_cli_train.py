"""Bad input to ``imgserve train`` / ``imgserve export`` is one error line and exit code 2, before any
TensorFlow import (so these run in the unit tier)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgserve.cli import main
from imgserve.commands.train import command_line
from training.train import TrainConfig


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "{tmp}/missing", "--out", "{tmp}/run"], "dataset '{tmp}/missing' not found"),
        (["train", "--dataset", "{tmp}/empty", "--out", "{tmp}/run"], "holds no images in class folders"),
        (
            ["train", "--arch", "resnet9000", "--out", "{tmp}/run"],
            "unknown architecture 'resnet9000'; choose one of small-cnn, vgg3, mobilenetv2",
        ),
        (["train", "--epochs", "0", "--out", "{tmp}/run"], "epochs must be >= 1"),
        (
            ["train", "--dataset", "digits", "--tta-flip", "--out", "{tmp}/run"],
            "--tta-flip needs labels that survive a mirror image; the labels of digits may not",
        ),
        (["train", "--init-from", "{tmp}/nothing.keras", "--out", "{tmp}/run"], "no model.keras there"),
        (["train", "--out", "{tmp}/afile"], "cannot write the run directory {tmp}/afile: it is a file"),
        (["train", "--out", "{tmp}/afile/run"], "cannot write the run directory {tmp}/afile/run: {tmp}/afile is a file"),
        (
            ["train", "--out", "{tmp}/run", "--progress-file", "{tmp}/afile/p.jsonl"],
            "cannot write {tmp}/afile: it is a file",  # the progress file's folder
        ),
        (
            ["export", "{tmp}/norun", "--name", "x", "--models-dir", "{tmp}/m"],
            "run directory {tmp}/norun not found",
        ),
        (
            ["export", "{tmp}/empty", "--name", "x", "--models-dir", "{tmp}/m"],
            "is incomplete: training did not finish",
        ),
        (["export", "{tmp}/empty", "--name", "bad name!", "--models-dir", "{tmp}/m"], "invalid model name"),
        (
            ["export", "{tmp}/empty", "--name", "x", "--quantization", "int3"],
            "unknown quantization preset 'int3'",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "\n" not in err and "Traceback" not in captured.err
    assert err.startswith(f"imgserve {argv[0]}: error: ") and message.format(tmp=tmp_path) in err


def test_unreadable_image_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.test_datasets import make_folder

    folder = make_folder(tmp_path / "data")
    (folder / "green" / "001.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    assert main(["train", "--dataset", str(folder), "--img-size", "16", "--out", str(tmp_path / "run")]) == 2
    assert "error: cannot read image green/001.jpg: " in capsys.readouterr().err


def test_recorded_command_reproduces_the_config() -> None:
    config = TrainConfig(dataset="digits", epochs=3, img_size=16, augment=True)
    cmd = command_line(config, Path("runs/d"))
    assert cmd == (
        "imgserve train --dataset digits --arch small-cnn --epochs 3 --batch-size 128 --seed 0 "
        "--img-size 16 --augment --out runs/d"
    )


def test_recorded_command_parses_back_to_the_same_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every flag the recorded command carries (switches included) gives back the config that made it."""
    import shlex

    from imgserve.cli import build_parser
    from imgserve.commands import train as train_command

    config = TrainConfig(
        dataset="fashion-mnist", arch="vgg3", epochs=20, label_smoothing=0.1, augment=True, tta_flip=True,
        precision="bfloat16", time_budget_minutes=14.0,
    )
    cmd = command_line(config, Path("runs/f"))
    assert "--precision bfloat16" in cmd and cmd.endswith("--augment --tta-flip --out runs/f")
    seen: list[TrainConfig] = []

    def record(c: TrainConfig, out: Path, **kwargs: object) -> None:
        seen.append(c)
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr("training.train.train", record)
    with pytest.raises(KeyboardInterrupt):
        train_command.train_command(build_parser().parse_args(shlex.split(cmd)[1:]))
    assert seen == [TrainConfig(**{**config.to_dict(), "command": cmd})]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"summary.json": "{"}, "run directory {run}: summary.json cannot be read (Expecting property name"),
        ({"labels.json": None}, "run directory {run} is incomplete: no labels.json; train it again"),
        ({"model.keras": None, "dataset.json": None}, "is incomplete: no model.keras, dataset.json; train it again"),
        ({"heldout.npz": "PK\x03\x04 truncated"}, "{run}: heldout.npz cannot be read (BadZipFile: "),
    ],
)
def test_a_damaged_run_is_one_line_before_tensorflow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: dict[str, str | None], message: str
) -> None:
    """A run directory whose files were truncated or deleted (a full disk, a hand edit): export names the file
    in one line; it printed a JSONDecodeError or BadZipFile traceback, or 'no summary.json' for a missing model."""
    run = tmp_path / "run"
    run.mkdir()
    files = {n: "{}" for n in ("summary.json", "config.json", "dataset.json", "evaluation.json")}
    files |= {"labels.json": '["a", "b"]', "preprocessing.json": '{"height": 8, "width": 8, "channels": 1}'}
    files |= {"model.keras": "not read before the held-out images", "heldout.npz": ""}
    for name, text in (files | damage).items():
        if text is not None:
            (run / name).write_text(text)
    assert main(["export", str(run), "--name", "x", "--models-dir", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("imgserve export: error: ") and message.format(run=run) in err, err
    assert not [p for p in (tmp_path / "m").rglob("*") if not p.is_dir()]  # nothing registered or left staged
