"""serving/loading.py: a version that does not load is named with its reason, logged once, not retried by the
watch for a while; serving/fallback.py: the fallback order prefers earlier production versions and never a
newer candidate."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from inference.errors import VersionNotLoadable
from inference.registry import Registry
from inference.session import SessionOptions
from serving.fallback import fallback_candidates
from serving.loading import VersionLoader
from tests.fixtures import register_tiny


def truncate(registry: Registry, name: str, version: int) -> None:
    for variant in ("fp32", "int8"):
        path = registry.model_file(name, version, variant)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_loader_names_the_version_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(tmp_path)
    register_tiny(registry)
    truncate(registry, "tiny", 1)
    failures: list[str] = []
    loader = VersionLoader("tiny", registry, SessionOptions(), batch_limit=1, auto_batch=False,
                           on_failure=failures.append)
    with caplog.at_level(logging.DEBUG, logger="serving.loading"):
        for retry in (False, False, True):
            with pytest.raises(VersionNotLoadable) as info:
                loader.load(1, "int8", retry=retry)
            assert info.value.http_status == 409
            assert "'tiny' v1 (int8) cannot be loaded" in info.value.message
            assert str(tmp_path) not in info.value.message  # no server paths for clients
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and failures == ["tiny"]


def test_fallback_prefers_earlier_production_versions(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    for seed in range(5):
        register_tiny(registry, seed=seed)  # v1 production; v2..v5 candidates
    registry.promote("tiny", 3)
    registry.promote("tiny", 5)
    registry.rollback("tiny", to=2)  # production v2; history: v1, v3, v5, v2
    assert fallback_candidates(registry, "tiny", 2) == [5, 3, 1]  # v4 was never production, and is newer
    registry.promote("tiny", 4)
    assert fallback_candidates(registry, "tiny", 4)[:3] == [2, 5, 3]
