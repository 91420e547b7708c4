from __future__ import annotations

import json

import pytest

from inference.errors import NotFound, RegistryError
from inference.registry import Registry
from tests.fixtures import register_tiny, tiny_card


def test_register_first_version_becomes_production(registry: Registry) -> None:
    card = register_tiny(registry)
    assert card.version == 1
    assert registry.resolve("tiny") == 1
    assert registry.list_models() == ["tiny"]
    assert registry.card("tiny", 1).labels == card.labels


def test_promote_and_rollback(registry: Registry) -> None:
    for seed in range(3):
        register_tiny(registry, seed=seed)
    assert registry.list_versions("tiny") == [1, 2, 3]
    assert registry.resolve("tiny") == 1
    registry.promote("tiny", 3, reason="better")
    assert registry.aliases("tiny")["production"] == 3 and registry.aliases("tiny")["previous"] == 1
    registry.rollback("tiny")
    assert registry.resolve("tiny") == 1 and registry.resolve("tiny", "previous") == 3
    registry.rollback("tiny", to=2)
    assert registry.resolve("tiny") == 2
    history = registry.aliases("tiny")["history"]
    assert [h["action"] for h in history] == ["register", "promote", "rollback", "rollback"]


def test_resolve_errors(registry: Registry) -> None:
    with pytest.raises(NotFound, match="no versions"):
        registry.resolve("tiny")
    register_tiny(registry)
    with pytest.raises(NotFound, match="no version 7"):
        registry.resolve("tiny", 7)
    with pytest.raises(NotFound, match="no alias 'staging'"):
        registry.resolve("tiny", "staging")
    with pytest.raises(NotFound, match="previous"):
        registry.rollback("tiny")


def test_failed_staging_leaves_nothing(registry: Registry) -> None:
    register_tiny(registry)
    with pytest.raises(RuntimeError):
        with registry.stage("tiny") as staged:
            (staged / "model.onnx").write_bytes(b"partial")
            raise RuntimeError("crash mid-export")
    vdir = registry.model_dir("tiny") / "versions"
    assert sorted(p.name for p in vdir.iterdir()) == ["1"]
    assert registry.list_versions("tiny") == [1]


def test_register_refuses_incomplete_version(registry: Registry) -> None:
    with registry.stage("tiny") as staged:
        (staged / "model.onnx").write_bytes(b"x")
        with pytest.raises(RegistryError, match="model.int8.onnx is missing"):
            registry.register(staged, tiny_card())
    assert registry.list_versions("tiny") == []


def test_aliases_file_is_valid_json_after_each_change(registry: Registry) -> None:
    register_tiny(registry)
    register_tiny(registry, seed=1)
    registry.promote("tiny", 2)
    data = json.loads((registry.model_dir("tiny") / "aliases.json").read_text())
    assert data["production"] == 2
    assert not [p for p in registry.model_dir("tiny").iterdir() if p.name.endswith(".tmp")]


def test_invalid_name_rejected(registry: Registry) -> None:
    with pytest.raises(Exception, match="invalid model name"):
        registry.resolve("../etc")


def test_published_files_have_ordinary_permissions(registry: Registry) -> None:
    import os
    import stat

    register_tiny(registry)
    mask = os.umask(0)
    os.umask(mask)
    vdir = registry.version_dir("tiny", 1)
    assert stat.S_IMODE(vdir.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((vdir / "metadata.json").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((registry.model_dir("tiny") / "aliases.json").stat().st_mode) == 0o666 & ~mask
