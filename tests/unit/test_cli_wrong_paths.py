"""A tired operator's paths and ports: a file where the registry or a data folder belongs, a port out of range.
Each is one error line and exit code 2 before anything starts (they were NotADirectoryError tracebacks from
the first registry call, a socket.gaierror from uvicorn, a worker traceback from `bentoml serve`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgserve.cli import main
from inference.errors import ConfigError
from inference.registry import Registry


@pytest.mark.parametrize(
    "argv",
    [
        ["models", "list", "--models-dir", "{f}"],
        ["models", "show", "fashion-mnist", "--models-dir", "{f}"],
        ["serve", "--models-dir", "{f}", "--dry-run"],
        ["export", "{tmp}/run", "--name", "x", "--models-dir", "{f}"],
    ],
)
def test_a_registry_that_is_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    (tmp_path / "models").write_text("not a registry")
    assert main([a.format(f=tmp_path / "models", tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"imgserve {argv[0]}: error: the registry {tmp_path / 'models'} is a file, not a folder", err


def test_registry_refuses_a_file_as_its_root(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        Registry(tmp_path / "f")
    assert Registry(tmp_path / "not-yet").list_models() == []  # a folder yet to be made is fine


def test_admin_data_dir_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data").write_text("")
    argv = ["admin", "--port", "0", "--data-dir", str(tmp_path / "data"), "--models-dir", str(tmp_path / "m")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"imgserve admin: error: cannot write the admin data directory {tmp_path}/data/datasets: " \
                  f"{tmp_path}/data is a file", err


@pytest.mark.parametrize(("command", "value", "message"), [
    ("serve", "-1", "-1 is not a port (0-65535)"),
    ("serve", "http", "'http' is not a port number"),
    ("admin", "70000", "70000 is not a port (0-65535)"),
])
def test_ports_out_of_range_are_usage_errors(
    capsys: pytest.CaptureFixture[str], command: str, value: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--port", value, "--dry-run"] if command == "serve" else [command, "--port", value])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().endswith(f"imgserve {command}: error: argument --port: {message}")


@pytest.mark.parametrize(("flags", "message"), [
    (["--workers", "0"], "--workers (IMGSERVE_WORKERS): Input should be greater than or equal to 1"),
    (["--timeout", "-1"], "--timeout (IMGSERVE_TIMEOUT_S): Input should be greater than 0"),
    (["--max-batch-size", "0"], "--max-batch-size (IMGSERVE_MAX_BATCH_SIZE): Input should be greater than or equal to 1"),
])
def test_serve_checks_the_settings_its_workers_will_read(
    capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """They were a ConfigError traceback from each bentoml worker importing service.py; the line names the flag
    the user typed (it named only the environment variable the flag becomes)."""
    assert main(["serve", *flags, "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == f"imgserve serve: error: invalid serving settings: {message}"


def test_a_bad_environment_variable_is_named_as_such(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGSERVE_MAX_QUEUE", "-3")
    assert main(["serve", "--dry-run"]) == 2
    assert capsys.readouterr().err.strip() == (
        "imgserve serve: error: invalid serving settings: IMGSERVE_MAX_QUEUE: Input should be greater than or equal to 1")
