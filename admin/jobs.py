"""Retraining jobs: persisted records, a queue, and one subprocess per job.

A job runs ``python -m imgserve retrain …`` (train → export → register a candidate → promotion policy) in
its own process group, so the admin runner never imports TensorFlow and a crash or ``kill -9`` of the job
cannot touch the runner; the other way round, a job dies with its runner (see :mod:`admin.lifeline`).
The registry only changes at the very end of a job (an atomic version rename, then an atomic alias write),
so a job killed at any moment leaves production and the registry consistent.
Job state is a JSON file per job, rewritten atomically on every change; on start-up, jobs that were
running when the runner stopped are recorded as what they left behind, queued ones run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from inference.atomic import atomic_write_json
from inference.errors import ConfigError, NotFound
from inference.registry import Registry, utc_now
from inference.storage import normalize_root

from .lifeline import die_with_parent, interrupted, registry_snapshot
from .requests import JobRequest
from .settings import AdminSettings

log = logging.getLogger(__name__)

TERMINAL = {"succeeded", "failed", "cancelled"}
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class JobStore:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def dir(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):  # ASCII and short: "²" is alnum to Python, 300 chars is an OSError
            raise NotFound(f"no job {job_id[:80]!r}")
        return self.root / job_id

    def save(self, job: dict[str, Any]) -> dict[str, Any]:
        atomic_write_json(self.dir(job["id"]) / "job.json", job)
        return job

    def load(self, job_id: str) -> dict[str, Any]:
        path = self.dir(job_id) / "job.json"
        if not path.is_file():
            raise NotFound(f"no job {job_id!r}")
        return json.loads(path.read_text())

    def all(self) -> list[dict[str, Any]]:
        jobs = [json.loads(p.read_text()) for p in self.root.glob("*/job.json")]
        return sorted(jobs, key=lambda j: j["created_at"])

    def progress(self, job_id: str) -> list[dict[str, Any]]:
        path = self.dir(job_id) / "progress.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def log_tail(self, job_id: str, lines: int = 40) -> list[str]:
        path = self.dir(job_id) / "log.txt"
        if not path.is_file():
            return []
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
        return text.splitlines()[-lines:]


class JobRunner:
    """Runs queued jobs, at most ``max_parallel_jobs`` at a time, each in a subprocess."""

    def __init__(
        self,
        settings: AdminSettings,
        store: JobStore,
        images_dir: Callable[[str], Path],
        registry: Registry,
        on_finished: Callable[[dict[str, Any]], Awaitable[None]] | None = None,  # may add fields to the job
    ):
        self.settings = settings
        self.store = store
        self.images_dir = images_dir
        self.registry = registry
        self.on_finished = on_finished
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._cancelled: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        for job in self.store.all():
            if job["state"] == "running":
                self.store.save(interrupted(job, self.store.dir(job["id"]), self.registry))
        self._task = asyncio.create_task(self._loop(), name="job-runner")
        self._wake.set()

    async def stop(self) -> None:
        for job_id in list(self._procs):
            await self.cancel(job_id, reason="the admin runner is shutting down")
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for t in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await t

    # ---- API ---------------------------------------------------------------------------------------
    def submit(self, request: JobRequest) -> dict[str, Any]:
        """Queue a validated request; the datasets must exist now (a job must not fail later for a typo)."""
        for ds in request.datasets:
            self.images_dir(ds)  # raises NotFound for an unknown dataset
        job = {
            "id": uuid.uuid4().hex[:12],
            "state": "queued",
            "created_at": utc_now(),
            "started_at": None,
            "finished_at": None,
            "params": {
                "datasets": list(request.datasets),
                "model": request.model or self.settings.model,
                "architecture": request.architecture,
                "epochs": request.epochs,
                "base_version": "scratch" if request.from_scratch else request.base_version,
                "promote": request.promote,
                "margin": self.settings.promote_margin if request.margin is None else request.margin,
                "img_size": request.img_size,
            },
            "error": None,
            "result": None,
        }
        self.store.dir(job["id"]).mkdir(parents=True, exist_ok=True)
        self.store.save(job)
        self._wake.set()
        return job

    async def cancel(self, job_id: str, *, reason: str = "cancelled by request") -> dict[str, Any]:
        job = self.store.load(job_id)
        if job["state"] in TERMINAL:
            raise ConfigError(f"job {job_id} already {job['state']}", http_status=409)
        self._cancelled.add(job_id)
        proc = self._procs.get(job_id)
        if proc is None:
            job.update(state="cancelled", finished_at=utc_now(), error=reason)
            return self.store.save(job)
        _kill_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            _kill_group(proc, signal.SIGKILL)
            await proc.wait()
        for _ in range(100):  # the job task records the final state
            job = self.store.load(job_id)
            if job["state"] in TERMINAL:
                break
            await asyncio.sleep(0.05)
        return job

    # ---- internals ---------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for job in self.store.all():
                if len(self._running) >= self.settings.max_parallel_jobs:
                    break
                if job["state"] == "queued" and job["id"] not in self._procs:
                    task = asyncio.create_task(self._run(job))
                    self._running.add(task)
                    task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    def command(self, job: dict[str, Any]) -> list[str]:
        p = job["params"]
        jdir = self.store.dir(job["id"])
        cmd = [
            self.settings.job_python or sys.executable, "-m", "imgserve", "retrain",
            "--name", p["model"],
            "--models-dir", normalize_root(self.settings.models_dir),
            "--arch", p["architecture"],
            "--epochs", str(p["epochs"]),
            "--work-dir", str((jdir / "run").resolve()),
            "--progress-file", str((jdir / "progress.jsonl").resolve()),
            "--result-file", str((jdir / "result.json").resolve()),
            "--promote", p["promote"],
            "--margin", str(p["margin"]),
        ]
        for ds in p["datasets"]:
            cmd += ["--data", str(self.images_dir(ds).resolve())]
        base = p.get("base_version")
        if base in (None, "", "scratch"):
            cmd += ["--from-scratch"]
        else:
            cmd += ["--base-version", str(base)]
        if p.get("img_size"):
            cmd += ["--img-size", str(int(p["img_size"]))]
        return cmd

    async def _run(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        jdir = self.store.dir(job_id)
        cmd = self.command(job)
        job.update(state="running", started_at=utc_now(), command=cmd,
                   registry_before=registry_snapshot(self.registry, job["params"]["model"]))
        self.store.save(job)
        log.info("job %s: starting %s", job_id, " ".join(cmd))
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")]))
        with open(jdir / "log.txt", "ab") as logf:
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=logf, stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                env=env, start_new_session=True, preexec_fn=die_with_parent(),
            )
            self._procs[job_id] = proc
            job["pid"] = proc.pid
            self.store.save(job)
            rc = await proc.wait()
        self._procs.pop(job_id, None)
        job = self.store.load(job_id)
        job["finished_at"] = utc_now()
        job["returncode"] = rc
        result_path = jdir / "result.json"
        if job_id in self._cancelled:
            self._cancelled.discard(job_id)
            job.update(state="cancelled", error=job.get("error") or "cancelled by request")
        elif rc == 0 and result_path.is_file():
            job.update(state="succeeded", result=json.loads(result_path.read_text()))
        elif rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            job.update(state="failed", error=f"the job process was killed by signal {-rc} ({name})")
        else:
            tail = self.store.log_tail(job_id, 5)
            last = next((ln for ln in reversed(tail) if "error" in ln.lower()), tail[-1] if tail else "")
            job.update(state="failed", error=f"the job exited with code {rc}: {last.strip()[:500]}")
        if self.on_finished:  # before the final save, so a reader never sees "succeeded" without its follow-up
            try:
                await self.on_finished(job)
            except Exception:
                log.exception("job %s: on_finished hook failed", job_id)
        self.store.save(job)
        log.info("job %s: %s", job_id, job["state"])


def _kill_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
