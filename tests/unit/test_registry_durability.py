"""Issue 12 finding 8 on the local registry: fsync before the rename that publishes, stale staging cleaned,
and issue 11's race rules (version numbers, compare-and-swap aliases) that both backends share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from inference.atomic import STALE_UNLOCKED_S, clean_stale_staging
from inference.registry import Registry
from inference.storage import MANIFEST_FILE, Manifest
from tests.fixtures import race_two_promotes, register_tiny

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys, time
from inference.registry import Registry
with Registry(sys.argv[1]).stage("tiny") as staged:
    (staged / "model.onnx").write_bytes(b"half a model")
    print(staged, flush=True)
    time.sleep(600)
"""


def _start_writer(root: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_staging_of_a_killed_writer_is_removed_and_a_live_writers_is_kept(registry: Registry) -> None:
    register_tiny(registry)
    live, live_dir = _start_writer(registry.root)
    dead, dead_dir = _start_writer(registry.root)
    try:
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(timeout=10)
        assert dead_dir.is_dir()  # kill -9 leaves it behind ...
        removed = registry.clean_staging()  # ... the admin runner's start (and every new stage) removes it
        assert removed == [dead_dir] and not dead_dir.exists()
        assert not Path(f"{dead_dir}.lock").exists()
        assert live_dir.is_dir() and (live_dir / "model.onnx").read_bytes() == b"half a model"
        with registry.stage("tiny"):  # a second writer starting meanwhile leaves the live one alone too
            assert live_dir.is_dir()
    finally:
        live.kill()
        live.wait(timeout=10)
    assert registry.clean_staging() == [live_dir]
    assert sorted(p.name for p in (registry.model_dir("tiny") / "versions").iterdir()) == ["1"]
    assert registry.list_versions("tiny") == [1]


def test_a_staging_folder_without_lock_is_removed_only_when_old(tmp_path: Path) -> None:
    fresh, old = tmp_path / ".staging-fresh", tmp_path / ".staging-old"
    fresh.mkdir()
    old.mkdir()
    past = time.time() - STALE_UNLOCKED_S - 60
    os.utime(old, (past, past))
    (tmp_path / ".staging-gone.lock").write_text("")  # its writer died before making the folder
    os.utime(tmp_path / ".staging-gone.lock", (past, past))
    assert clean_stale_staging(tmp_path) == [old]
    assert fresh.is_dir() and not (tmp_path / ".staging-gone.lock").exists()


def test_files_and_folders_are_fsynced_before_the_rename_that_publishes(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("rename", f"{src} -> {dst}"))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    register_tiny(registry)
    vdir = registry.version_dir("tiny", 1)
    publish = next(i for i, (kind, what) in enumerate(events) if kind == "rename" and what.endswith(f" -> {vdir}"))
    staged = events[publish][1].split(" -> ")[0]
    synced_before = {what for kind, what in events[:publish] if kind == "fsync"}
    assert {f"{staged}/{p.name}" for p in vdir.iterdir()} | {staged} <= synced_before
    assert ("fsync", str(vdir.parent)) in events[publish:]  # the rename itself is made durable
    # and what became visible is complete: every file matches the manifest written with it
    manifest = Manifest.from_bytes((vdir / MANIFEST_FILE).read_bytes())
    assert set(manifest.files) == {"model.onnx", "model.int8.onnx", "metadata.json"}
    assert all(manifest.problem(name, vdir / name) is None for name in manifest.files)


def test_two_writers_that_read_the_same_aliases_one_wins_one_conflicts(registry: Registry) -> None:
    for seed in range(3):
        register_tiny(registry, seed=seed)
    outcome = race_two_promotes(registry)
    winners = [v for v, o in outcome.items() if o == "won"]
    assert len(winners) == 1, outcome
    loser = ({2, 3} - set(winners)).pop()
    assert "changed while this promote was being written" in outcome[loser]
    assert registry.resolve("tiny") == winners[0]
    assert [h["version"] for h in registry.aliases("tiny")["history"]] == [1, winners[0]]


def test_concurrent_exports_get_distinct_numbers(registry: Registry) -> None:
    cards: list[int] = []
    threads = [threading.Thread(target=lambda s=s: cards.append(register_tiny(registry, seed=s).version)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(cards) == [1, 2, 3, 4] == registry.list_versions("tiny")
