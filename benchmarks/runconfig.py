"""The benchmark suite's settings: one :class:`RunConfig`, with the quick and full presets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .workloads import Workload

QUICK = {"duration_s": 1.0, "warmup_s": 0.4, "repeats": 1, "inprocess_s": 0.5, "budget_s": 180.0}
FULL = {"duration_s": 2.0, "warmup_s": 0.6, "repeats": 3, "inprocess_s": 1.5, "budget_s": 1200.0}


@dataclass
class RunConfig:
    workloads: list[Workload]
    targets: list[str]
    out: Path
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32, 64])
    quick: bool = False
    duration_s: float = FULL["duration_s"]
    warmup_s: float = FULL["warmup_s"]
    repeats: int = 3
    inprocess_s: float = FULL["inprocess_s"]
    budget_s: float = FULL["budget_s"]
    timeout_s: float = 30.0
    max_requests: int = 100_000
    imgserve_dir: Path = Path(__file__).resolve().parent.parent
    cpus: int = 0  # 0: the CPUs this process may use
    processes: int = 0  # front-end processes per server (imgserve workers, uvicorn workers...); 0: one per CPU
    server_cpus: list[int] | None = None
    mlserver_python: str | None = None
    label: str = ""
    plots: bool = True
    raw: bool = False  # also write every request's (start, latency, status) to raw/*.csv.gz
    interleave: bool = True  # all servers up together, points in turn (benchmarks/runner.py); False: one by one
    client: str = "auto"  # HTTP load generator: wrk | python | auto (wrk when installed; benchmarks/wrk.py)

    @classmethod
    def preset(cls, quick: bool, **overrides: Any) -> RunConfig:
        base = dict(QUICK if quick else FULL)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(quick=quick, **base)  # type: ignore[arg-type]

    def point_cost_s(self) -> float:
        return self.warmup_s + self.duration_s + 0.4


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover
        return max(1, os.cpu_count() or 1)
