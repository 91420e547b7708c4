from __future__ import annotations

from pathlib import Path

import pytest

from imgserve.cli import main
from inference.registry import Registry
from tests.fixtures import register_tiny


def test_bench_command_lists_targets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    register_tiny(Registry(tmp_path))
    assert main(["bench", "targets", "--workloads", f"tiny={tmp_path}:tiny"]) == 0
    out = capsys.readouterr().out
    assert "workload tiny: tiny v1" in out and "fastapi" in out and "keras-flask" in out


def test_bench_run_reports_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["bench", "run", "--quick", "--workloads", f"none={tmp_path}:absent", "--out", str(out), "--no-plots"]) == 0
    assert "not run" in capsys.readouterr().out
    assert "is not in the registry" in (out / "report.md").read_text()
