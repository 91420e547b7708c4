"""The processes of the replica rehearsal: ``bentoml serve`` replicas and the admin runner, each a child in
its own process group on a loopback port, all on one registry; and the registry seeded with two versions of
the shipped default model (same weights, distinct version numbers: responses name their version).

Signals follow what an orchestrator does: SIGTERM goes to the server's main process only (a container's
PID 1), SIGKILL to its whole process tree (the container is gone, workers included).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
MODEL = "fashion-mnist"
EXAMPLE_IMAGE = REPO / "examples" / "ankle-boot.png"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """One server process; ``ready_path`` answering 200 means it is up."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    log: Path
    port: int
    ready_path: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; its log, {self.log}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + self.ready_path, timeout=2.0).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout_s} s; its log, {self.log}:\n{self.tail()}")

    def terminate(self) -> None:
        """SIGTERM to the main process only, as Kubernetes does to a container's PID 1."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)

    def tree(self) -> list[psutil.Process]:
        """The main process and all its descendants. BentoML starts each worker in a session of its own, so
        a process group does not hold them: a worker whose arbiter was SIGKILLed would live on, orphaned,
        still serving on the inherited socket."""
        if self.proc is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            main = psutil.Process(self.proc.pid)
            return [main, *main.children(recursive=True)]
        return []

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of the main process and of its largest child (a worker), in MiB: what a container
        limit has to hold is about main + workers x worker."""
        sizes = []
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                sizes.append(p.memory_info().rss / 2**20)
        return {"main": round(sizes[0], 1), "worker": round(max(sizes[1:], default=0.0), 1)} if sizes else {}

    def kill9(self) -> None:
        """SIGKILL to every process of the replica, as when a container dies: gone mid-request."""
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()

    def wait_exit(self, timeout_s: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc is None:
            return
        tree = self.tree()  # before the main process goes: then its orphans can no longer be found from it
        if self.proc.poll() is None:
            self.terminate()
            if self.wait_exit(20) is None:
                self.kill9()
                self.proc.wait(timeout=5)
        _, alive = psutil.wait_procs(tree, timeout=5)
        for p in alive:  # workers that outlived their arbiter
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def seed_registry(models_dir: Path) -> tuple[int, int]:
    """Two versions of the shipped default model in a fresh local registry; production = the first."""
    from inference.registry import Registry

    shipped = Registry(REPO / "models")
    version = shipped.resolve(MODEL)
    card = shipped.card(MODEL, version)
    registry = Registry(models_dir)
    seeded = card.replace(created_at="", command=f"python -m deploy.replicas (copy of the shipped v{version})")
    versions = []
    for _ in range(2):
        with registry.stage(MODEL) as staged:
            for variant in card.variants:
                source = shipped.model_file(MODEL, version, variant)
                shutil.copy2(source, staged / source.name)
            versions.append(registry.register(staged, seeded).version)
    return versions[0], versions[1]


def replica(name: str, tmp: Path, models_dir: str, env: dict[str, str], poll_interval_s: float) -> Proc:
    """``bentoml serve .`` on its own port: one worker, one lane, gRPC off (each replica is a pod)."""
    port = free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(port), "--host", "127.0.0.1"]
    settings = {
        "IMGSERVE_MODELS_DIR": models_dir, "IMGSERVE_MODEL": MODEL, "IMGSERVE_WORKERS": "1", "IMGSERVE_LANES": "1",
        "IMGSERVE_DECODE_THREADS": "1", "IMGSERVE_GRPC_PORT": "0", "IMGSERVE_POLL_INTERVAL_S": str(poll_interval_s),
        "BENTOML_HOME": str(tmp / f"bentoml-{name}"), "IMGSERVE_CACHE_DIR": str(tmp / f"cache-{name}"),
    }
    return Proc(name, cmd, {**env, **settings}, tmp / f"{name}.log", port, "/readyz")


def admin_runner(tmp: Path, models_dir: str, env: dict[str, str], service_url: str) -> Proc:
    port = free_port()
    cmd = [sys.executable, "-m", "imgserve", "admin", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(tmp / "admin-data"), "--service-url", service_url]
    settings = {"IMGSERVE_MODELS_DIR": models_dir, "IMGSERVE_MODEL": MODEL, "IMGSERVE_CACHE_DIR": str(tmp / "cache-admin")}
    return Proc("admin", cmd, {**env, **settings},
                tmp / "admin.log", port, "/health")


@contextlib.contextmanager
def environ(extra: dict[str, str]) -> Iterator[None]:
    """``extra`` in this process's environment for a while (the harness reads the S3 registry too)."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def publish(local: Path, registry: str, env: dict[str, str]) -> None:
    """``imgserve models copy`` a local registry to ``registry`` (``s3://…``), as a user publishes one."""
    cmd = [sys.executable, "-m", "imgserve", "models", "copy", str(local), registry]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed:\n{done.stdout}{done.stderr}")


def base_env(token: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every process: the caller's, the admin token, and ``extra`` (e.g. the AWS_*
    variables of an S3 endpoint)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "BENTOML_DO_NOT_TRACK": "true",
            "IMGSERVE_ADMIN_TOKEN": token, **(extra or {})}
