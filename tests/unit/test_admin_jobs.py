from __future__ import annotations

import asyncio
from pathlib import Path

from admin.jobs import JobRunner, JobStore
from admin.settings import AdminSettings


def test_restart_keeps_finished_jobs_and_fails_interrupted_ones(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs")
    base = {"created_at": "2026-01-01T00:00:00Z", "params": {}, "error": None, "result": None}
    store.save({**base, "id": "done1", "state": "succeeded", "result": {"candidate_version": 2}})
    store.save({**base, "id": "run1", "state": "running", "pid": 999999})
    store.save({**base, "id": "gone1", "state": "cancelled", "error": "cancelled by request"})

    async def main() -> None:
        runner = JobRunner(AdminSettings(data_dir=tmp_path), store, lambda ds: tmp_path)
        runner.start()
        await asyncio.sleep(0.05)
        await runner.stop()

    asyncio.run(main())
    jobs = {j["id"]: j for j in store.all()}
    assert jobs["done1"]["state"] == "succeeded" and jobs["done1"]["result"] == {"candidate_version": 2}
    assert jobs["run1"]["state"] == "failed" and "restarted" in jobs["run1"]["error"]
    assert jobs["gone1"]["state"] == "cancelled"


def test_job_command_runs_the_retrain_cli(tmp_path: Path) -> None:
    settings = AdminSettings(data_dir=tmp_path, models_dir=tmp_path / "models")
    store = JobStore(settings.jobs_dir)
    images = tmp_path / "ds" / "images"
    images.mkdir(parents=True)
    runner = JobRunner(settings, store, lambda ds: images)
    job = {"id": "abc", "params": {"datasets": ["ds"], "model": "m", "architecture": "small-cnn", "epochs": 2,
                                   "base_version": "scratch", "promote": "never", "margin": 0.01, "img_size": None}}
    cmd = runner.command(job)
    assert cmd[1:4] == ["-m", "imgserve", "retrain"]
    assert "--from-scratch" in cmd and cmd[cmd.index("--promote") + 1] == "never"
    assert cmd[cmd.index("--data") + 1] == str(images.resolve())
