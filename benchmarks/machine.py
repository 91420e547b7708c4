"""What a benchmark run records about where it ran: host, CPU, load, commit and package versions."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from inference.cpuinfo import cpu_summary
from inference.registry import utc_now

from .runconfig import RunConfig


def machine_meta(cfg: RunConfig, cpus: int) -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True,
                                  timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    versions = {}
    for pkg in ("onnxruntime", "numpy", "pillow", "bentoml", "fastapi", "uvicorn", "litserve", "ray", "mlserver",
                "tensorflow-cpu", "keras", "aiohttp", "grpcio"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:
            pass
    return {
        "started_at": utc_now(),
        "label": cfg.label,
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_summary(),
        "cpus_available": cpus,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "versions": versions,
    }

