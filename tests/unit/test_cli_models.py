from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgserve.cli import main
from inference.registry import Registry
from tests.fixtures import register_tiny


def test_models_list_show_promote_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = Registry(tmp_path)
    register_tiny(reg)
    register_tiny(reg, seed=1)
    assert main(["models", "list", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "v1" in out and "v2" in out and "production" in out
    assert main(["models", "promote", "tiny", "2", "--models-dir", str(tmp_path)]) == 0
    assert reg.resolve("tiny") == 2
    assert main(["models", "rollback", "tiny", "--models-dir", str(tmp_path)]) == 0
    assert reg.resolve("tiny") == 1
    capsys.readouterr()
    assert main(["models", "show", "tiny", "--models-dir", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and shown["aliases"] == {"production": 1}


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "promote", "nope", "3", "--models-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"imgserve models: error: model 'nope' has no versions in the registry {tmp_path}"
    typo = tmp_path / "modles"  # a mistyped root is named as a folder that does not exist
    assert main(["models", "promote", "nope", "3", "--models-dir", str(typo)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"in the registry {typo} (no such folder)")
