from __future__ import annotations

from pathlib import Path

import pytest

from inference.registry import Registry


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")
