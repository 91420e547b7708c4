"""What the dashboard tests share about the stack they drive: the admin token, the model name, which optional
parts are installed (``imgserve retrain``, TensorFlow/Keras), and the admin runner command
(``python -m imgserve admin`` as a :class:`tests.e2e.harness.ServerProcess`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.e2e.harness import ServerProcess
from tests.ports import free_port

TOKEN = "e2e-dashboard-token"
MODEL = "fashion"
HAVE_RETRAIN = importlib.util.find_spec("imgserve.commands.retrain") is not None
HAVE_TF = all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "keras"))


def _admin(models_dir: Path, data_dir: Path, service_url: str, log: Path, job_python: Path | None) -> ServerProcess:
    port = free_port()
    cmd = [sys.executable, "-m", "imgserve", "admin", "--port", str(port), "--models-dir", str(models_dir),
           "--data-dir", str(data_dir), "--service-url", service_url]
    env = {"IMGSERVE_ADMIN_TOKEN": TOKEN, "IMGSERVE_MODEL": MODEL, "STAND_IN_EPOCH_S": "0.4"}
    if job_python:
        env["IMGSERVE_JOB_PYTHON"] = str(job_python)
    proc = ServerProcess(cmd, ready_url=f"http://127.0.0.1:{port}/health", log=log, env=env)
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return proc
