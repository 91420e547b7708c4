from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from imgserve.cli import main
from imgserve.commands.serve import serve_command
from inference.errors import ConfigError
from serving.settings import ServeSettings


def test_bentoml_traffic_timeout_stays_above_our_deadline() -> None:
    """Our queue deadline must answer 503 before BentoML's traffic.timeout could answer 504."""
    for timeout in (0.5, 10.0, 100.0):
        config = ServeSettings(timeout_s=timeout).service_config()
        assert config["traffic"]["timeout"] >= 3 * timeout  # type: ignore[index]
        assert "max_concurrency" not in config["traffic"]  # type: ignore[operator]


def test_workers_split_the_cores_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("serving.settings._cpus", lambda: 8)
    s = ServeSettings(workers=4)
    assert (s.lanes, s.decode_threads) == (2, 2)
    assert ServeSettings(workers=4, lanes=3).lanes == 3
    default = ServeSettings()  # one worker per core, each with one lane and one decode thread
    assert (default.workers, default.lanes, default.decode_threads) == (8, 1, 1)
    assert default.service_config()["workers"] == 8
    one = ServeSettings(workers=1)
    assert (one.lanes, one.decode_threads) == (8, 8)


def test_inflight_limit_covers_the_queue_and_the_lanes() -> None:
    s = ServeSettings(max_queue=2, lanes=1, max_batch_size=4, decode_threads=1)
    assert s.inflight_limit() == 2 + 8 + 2
    assert ServeSettings(max_inflight=5).inflight_limit() == 5


def test_bad_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSERVE_VARIANT", "fp16")
    with pytest.raises(ConfigError, match="IMGSERVE_VARIANT: Input should be 'int8' or 'fp32'"):
        ServeSettings.from_env()


def _args(*argv: str) -> argparse.Namespace:
    from imgserve.cli import build_parser

    return build_parser().parse_args(["serve", *argv])


def test_serve_command_sets_env_from_flags(tmp_path: Path) -> None:
    argv, env, root = serve_command(
        _args(
            "--port", "3456", "--models-dir", str(tmp_path), "--model", "tiny", "--variant", "fp32", "--workers", "2",
            "--keep-alive", "300",
        ),
        environ={"PATH": "/usr/bin"},
    )
    assert argv[1:5] == ["-m", "bentoml", "serve", "."] and argv[argv.index("--port") + 1] == "3456"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert (root / "service.py").is_file() and (root / "bentofile.yaml").is_file()
    assert env["IMGSERVE_MODELS_DIR"] == str(tmp_path.resolve())
    assert (env["IMGSERVE_MODEL"], env["IMGSERVE_VARIANT"], env["IMGSERVE_WORKERS"]) == ("tiny", "fp32", "2")
    assert env["IMGSERVE_KEEP_ALIVE_S"] == "300" and "--timeout-keep-alive" not in argv  # one knob: the setting
    assert str(root) in env["PYTHONPATH"].split(":")
    assert "IMGSERVE_MAX_QUEUE" not in env  # unset flags leave the defaults to the settings object


def test_serve_command_resolves_a_relative_registry_from_the_callers_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _, env, root = serve_command(_args(), environ={"IMGSERVE_MODELS_DIR": "my-models"})
    assert env["IMGSERVE_MODELS_DIR"] == str(tmp_path.resolve() / "my-models")
    _, env, root = serve_command(_args(), environ={})
    assert env["IMGSERVE_MODELS_DIR"] == str(root / "models")


def test_serve_dry_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--dry-run", "--port", "4000"]) == 0
    assert "bentoml serve . --port 4000" in capsys.readouterr().out
