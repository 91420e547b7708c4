from __future__ import annotations

import asyncio
import json
from pathlib import Path

from admin.jobs import JobRunner, JobStore
from admin.settings import AdminSettings
from inference.registry import Registry
from tests.fixtures import register_tiny


def _restart(settings: AdminSettings, store: JobStore, registry: Registry) -> dict[str, dict]:
    async def main() -> None:
        runner = JobRunner(settings, store, lambda ds: settings.data_dir, registry)
        runner.start()
        await asyncio.sleep(0.05)
        await runner.stop()

    asyncio.run(main())
    return {j["id"]: j for j in store.all()}


def test_restart_records_what_interrupted_jobs_left(tmp_path: Path) -> None:
    settings = AdminSettings(data_dir=tmp_path, models_dir=tmp_path / "models")
    registry = Registry(settings.models_dir)
    register_tiny(registry, seed=0)
    store = JobStore(settings.jobs_dir)
    base = {"created_at": "2026-01-01T00:00:00Z", "params": {"model": "tiny"}, "error": None, "result": None}
    before = {"latest": 1, "production": 1}
    store.save({**base, "id": "done1", "state": "succeeded", "result": {"candidate_version": 2}})
    store.save({**base, "id": "run1", "state": "running", "pid": 999999, "registry_before": before})
    store.save({**base, "id": "fin1", "state": "running", "pid": 999999, "registry_before": before})
    (store.dir("fin1") / "result.json").write_text(json.dumps({"candidate_version": 2, "production": 1}))
    store.save({**base, "id": "gone1", "state": "cancelled", "error": "cancelled by request"})

    jobs = _restart(settings, store, registry)
    assert jobs["done1"]["state"] == "succeeded" and jobs["done1"]["result"] == {"candidate_version": 2}
    assert jobs["run1"]["state"] == "failed" and jobs["run1"]["result"] is None
    assert "stopped with it; the registry is unchanged" in jobs["run1"]["error"]
    assert jobs["fin1"]["state"] == "succeeded" and jobs["fin1"]["result"]["candidate_version"] == 2
    assert "while the admin runner was down" in jobs["fin1"]["note"]
    assert jobs["gone1"]["state"] == "cancelled"


def test_restart_names_registry_changes_of_an_interrupted_job(tmp_path: Path) -> None:
    settings = AdminSettings(data_dir=tmp_path, models_dir=tmp_path / "models")
    registry = Registry(settings.models_dir)
    register_tiny(registry, seed=0)
    store = JobStore(settings.jobs_dir)
    store.save({"id": "run2", "state": "running", "created_at": "2026-01-01T00:00:00Z", "params": {"model": "tiny"},
                "error": None, "result": None, "registry_before": {"latest": 1, "production": 1}})
    register_tiny(registry, seed=1)  # what a job killed between export and its result file leaves
    registry.promote("tiny", 2, reason="test")
    job = _restart(settings, store, registry)["run2"]
    assert job["state"] == "failed"
    assert "version 2 was registered and production moved from 1 to 2" in job["error"]
    assert job["registry_after"] == {"latest": 2, "production": 2}


def test_job_command_runs_the_retrain_cli(tmp_path: Path) -> None:
    settings = AdminSettings(data_dir=tmp_path, models_dir=tmp_path / "models")
    store = JobStore(settings.jobs_dir)
    images = tmp_path / "ds" / "images"
    images.mkdir(parents=True)
    runner = JobRunner(settings, store, lambda ds: images, Registry(settings.models_dir))
    job = {"id": "abc", "params": {"datasets": ["ds"], "model": "m", "architecture": "small-cnn", "epochs": 2,
                                   "base_version": "scratch", "promote": "never", "margin": 0.01, "img_size": None}}
    cmd = runner.command(job)
    assert cmd[1:4] == ["-m", "imgserve", "retrain"]
    assert "--from-scratch" in cmd and cmd[cmd.index("--promote") + 1] == "never"
    assert cmd[cmd.index("--data") + 1] == str(images.resolve())
