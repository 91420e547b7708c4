"""The catalogue of servers and of the targets (server + protocol + body format) the runner measures.

Every server gets the same CPU budget: the cores the runner may use (``cpus``), spent as ``cpus`` parallel
inference lanes of one ORT intra-op thread each, and one front-end process; the knobs each server runs
with are recorded in results.json next to its numbers. A server whose dependencies are missing is reported
as unavailable with the reason (and how to fix it), never silently dropped.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import ServerSpec
from .workloads import ResolvedWorkload

REPO_ROOT = Path(__file__).resolve().parent.parent
MLSERVER_VENV_PYTHON = Path(__file__).resolve().parent / ".venvs" / "mlserver" / "bin" / "python"
MAX_BATCH = 32
BATCH_TIMEOUT_MS = 2.0  # peers whose batcher needs a fill window (LitServe, Ray, MLServer)


@dataclass(frozen=True)
class BuildContext:
    workload: ResolvedWorkload
    cpus: int
    imgserve_dir: Path
    python: str = sys.executable
    mlserver_python: str | None = None
    server_cpus: list[int] | None = None
    ready_timeout_s: float = 180.0
    processes: int = 1  # front-end processes (imgserve workers, uvicorn workers, LitServe API servers)

    @property
    def threads_per_process(self) -> int:
        """The inference lanes (threads) of each front-end process, so that all of them add up to ``cpus``."""
        return max(1, self.cpus // self.processes)


Ports = dict[str, int]


@dataclass(frozen=True)
class ServerDef:
    name: str
    variant: str  # which model file it serves: int8 | fp32 | keras
    description: str
    check: Callable[[BuildContext], str | None]  # None if it can run here, else why not
    build: Callable[[BuildContext, Ports], ServerSpec]
    knobs: Callable[[BuildContext], dict[str, Any]]
    startup_estimate_s: float = 10.0


@dataclass(frozen=True)
class TargetDef:
    name: str
    server: str
    protocol: str  # http | grpc
    path: str = "/predict"  # HTTP path; "{model}" is replaced by the model name
    encoding: str = "multipart"
    metrics: bool = False  # the server has imgserve's /metrics histograms
    quick: bool = False  # part of the --quick default selection
    description: str = ""


def _missing(*modules: str, hint: str = "") -> str | None:
    def absent_module(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is None
        except ModuleNotFoundError:  # find_spec("ray.serve") raises when "ray" itself is missing
            return True

    absent = [m for m in modules if absent_module(m)]
    if absent:
        return f"{', '.join(absent)} not installed ({hint or 'pip install -e .[bench,peers]'})"
    return None


def _peer_argv(ctx: BuildContext, module: str, port: int, *, python: str | None = None, **extra: Any) -> list[str]:
    w = ctx.workload
    argv = [python or ctx.python, "-m", f"benchmarks.peers.{module}", "--models-dir", str(w.root),
            "--model", w.card.name, "--version", str(w.version), "--port", str(port), "--workers", str(ctx.cpus),
            "--intra-op-threads", "1"]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return argv


def _peer_env() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# ---- imgserve ---------------------------------------------------------------------------------------------
def _imgserve_check(ctx: BuildContext) -> str | None:
    if not (ctx.imgserve_dir / "service.py").is_file():
        return f"no service.py in {ctx.imgserve_dir} (the BentoML service is not in this checkout yet)"
    return _missing("bentoml", hint="pip install -e .[serve]")


def _imgserve_env(ctx: BuildContext, variant: str, max_batch: int, grpc_port: int) -> dict[str, str]:
    return {
        "IMGSERVE_MODELS_DIR": str(ctx.workload.root),
        "IMGSERVE_MODEL": ctx.workload.card.name,
        "IMGSERVE_VERSION": str(ctx.workload.version),
        "IMGSERVE_VARIANT": variant,
        "IMGSERVE_WORKERS": str(ctx.processes),
        "IMGSERVE_LANES": str(ctx.threads_per_process),
        "IMGSERVE_DECODE_THREADS": str(ctx.threads_per_process),
        "IMGSERVE_INTRA_OP_THREADS": "1",
        "IMGSERVE_MAX_BATCH_SIZE": str(max_batch),
        "IMGSERVE_MAX_WAIT_MS": "0",
        "IMGSERVE_GRPC_PORT": str(grpc_port),
        "IMGSERVE_ACCESS_LOG": "false",
        "IMGSERVE_LOG_LEVEL": "WARNING",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ctx.imgserve_dir),  # the service's own packages, not whatever the runner imported
        # Its own: `bentoml serve` empties $BENTOML_HOME/prometheus_multiproc_dir when it starts, so with a shared
        # home the second imgserve of an interleaved run wiped the first one's metrics (its /metrics went blank).
        "BENTOML_HOME": str(Path(tempfile.gettempdir()) / "imgserve-bench" / f"bentoml-{variant}-b{max_batch}"),
    }


def _imgserve(variant: str, max_batch: int) -> tuple[Callable[[BuildContext, Ports], ServerSpec], Callable[[BuildContext], dict[str, Any]]]:
    def build(ctx: BuildContext, ports: Ports) -> ServerSpec:
        return ServerSpec(
            name=f"imgserve-{variant}-b{max_batch}",
            argv=[ctx.python, "-m", "bentoml", "serve", ".", "--host", "127.0.0.1", "--port", str(ports["http"])],
            ready_url=f"http://127.0.0.1:{ports['http']}/readyz",
            env=_imgserve_env(ctx, variant, max_batch, ports["grpc"]),
            cwd=ctx.imgserve_dir,
            ready_timeout_s=ctx.ready_timeout_s,
            cpus=ctx.server_cpus,
        )

    def knobs(ctx: BuildContext) -> dict[str, Any]:
        env = _imgserve_env(ctx, variant, max_batch, 0)
        env.pop("IMGSERVE_GRPC_PORT")
        env.pop("PYTHONPATH")
        return {"launch": "python -m bentoml serve . (repo root)", "processes": ctx.processes, **env}

    return build, knobs


# ---- peers --------------------------------------------------------------------------------------------------
def _fastapi_build(ctx: BuildContext, ports: Ports) -> ServerSpec:
    argv = _peer_argv(ctx, "fastapi_ort", ports["http"], processes=ctx.processes)
    argv[argv.index("--workers") + 1] = str(ctx.threads_per_process)  # a thread pool per process
    return ServerSpec("fastapi", argv,
                      f"http://127.0.0.1:{ports['http']}/readyz", _peer_env(), REPO_ROOT, ctx.ready_timeout_s, ctx.server_cpus)


def _litserve_build(ctx: BuildContext, ports: Ports) -> ServerSpec:
    argv = _peer_argv(ctx, "litserve_ort", ports["http"], max_batch_size=MAX_BATCH, batch_timeout_ms=BATCH_TIMEOUT_MS,
                      processes=ctx.processes)
    return ServerSpec("litserve", argv, f"http://127.0.0.1:{ports['http']}/health", _peer_env(), REPO_ROOT,
                      ctx.ready_timeout_s, ctx.server_cpus)


def _ray_check(ctx: BuildContext) -> str | None:
    reason = _missing("ray", "ray.serve", hint="pip install -e .[peers]")
    if reason:
        return reason
    try:
        import psutil

        avail = psutil.virtual_memory().available
        if avail < 3 << 30:
            return f"only {avail >> 20} MB of memory available; Ray Serve needs ~2 GB here"
    except ImportError:
        pass
    return None


def _ray_build(ctx: BuildContext, ports: Ports) -> ServerSpec:
    argv = _peer_argv(ctx, "rayserve_ort", ports["http"], max_batch_size=MAX_BATCH, batch_timeout_ms=BATCH_TIMEOUT_MS)
    env = {**_peer_env(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0"}
    return ServerSpec("rayserve", argv, f"http://127.0.0.1:{ports['http']}/readyz", env, REPO_ROOT,
                      max(ctx.ready_timeout_s, 180.0), ctx.server_cpus)


def mlserver_python(ctx: BuildContext) -> str | None:
    if ctx.mlserver_python:
        return ctx.mlserver_python
    if MLSERVER_VENV_PYTHON.is_file():
        return str(MLSERVER_VENV_PYTHON)
    if importlib.util.find_spec("mlserver") is not None:
        return ctx.python
    return None


def _mlserver_check(ctx: BuildContext) -> str | None:
    if mlserver_python(ctx) is None:
        return (f"mlserver not installed: it pins fastapi/starlette older than BentoML's, so give it its own venv "
                f"({MLSERVER_VENV_PYTHON.parent.parent}, see docs/benchmarks.md) or pass --mlserver-python")
    return None


def _mlserver_build(ctx: BuildContext, ports: Ports) -> ServerSpec:
    argv = _peer_argv(ctx, "mlserver_ort", ports["http"], python=mlserver_python(ctx), grpc_port=ports["grpc"],
                      max_batch_size=MAX_BATCH, batch_timeout_ms=BATCH_TIMEOUT_MS)
    return ServerSpec("mlserver", argv, f"http://127.0.0.1:{ports['http']}/v2/models/{ctx.workload.card.name}/ready",
                      _peer_env(), REPO_ROOT, ctx.ready_timeout_s, ctx.server_cpus)


def _keras_check(ctx: BuildContext) -> str | None:
    if ctx.workload.keras_file is None:
        return f"{ctx.workload.card.name} v{ctx.workload.version} has no model.keras in its version directory"
    return _missing("tensorflow", "keras", "flask", hint="pip install -e .[train,bench]")


def _keras_build(ctx: BuildContext, ports: Ports) -> ServerSpec:
    env = {**_peer_env(), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    return ServerSpec("keras-flask", _peer_argv(ctx, "keras_flask", ports["http"]),
                      f"http://127.0.0.1:{ports['http']}/readyz", env, REPO_ROOT, ctx.ready_timeout_s, ctx.server_cpus)


def _knobs(**fixed: Any) -> Callable[[BuildContext], dict[str, Any]]:
    def knobs(ctx: BuildContext) -> dict[str, Any]:
        return {k: (v(ctx) if callable(v) else v) for k, v in fixed.items()}

    return knobs


def _cpus(ctx: BuildContext) -> int:
    return ctx.cpus


def _processes(ctx: BuildContext) -> int:
    return ctx.processes


def _threads(ctx: BuildContext) -> int:
    return ctx.threads_per_process


_int8_b32 = _imgserve("int8", MAX_BATCH)
_int8_b1 = _imgserve("int8", 1)
_fp32_b32 = _imgserve("fp32", MAX_BATCH)

SERVERS: dict[str, ServerDef] = {
    s.name: s
    for s in (
        ServerDef("imgserve-int8", "int8", "imgserve (BentoML + own micro-batcher), INT8", _imgserve_check,
                  _int8_b32[0], _int8_b32[1], 15.0),
        ServerDef("imgserve-nobatch", "int8", "imgserve with batching off (IMGSERVE_MAX_BATCH_SIZE=1)",
                  _imgserve_check, _int8_b1[0], _int8_b1[1], 15.0),
        ServerDef("imgserve-fp32", "fp32", "imgserve serving the fp32 model", _imgserve_check, _fp32_b32[0],
                  _fp32_b32[1], 15.0),
        ServerDef("fastapi", "int8", "FastAPI + ORT, batch 1 in a thread pool",
                  lambda ctx: _missing("fastapi", "uvicorn"), _fastapi_build,
                  _knobs(processes=_processes, threadpool_per_process=_threads, ort_sessions="1 per process",
                         intra_op_threads=1, batching="none", server="uvicorn, access log off"), 6.0),
        ServerDef("litserve", "int8", "LitServe, LitAPI(max_batch_size, batch_timeout)",
                  lambda ctx: _missing("litserve", hint="pip install -e .[peers]"), _litserve_build,
                  _knobs(api_servers=_processes, inference_workers=_cpus, intra_op_threads=1, max_batch_size=MAX_BATCH,
                         batch_timeout_ms=BATCH_TIMEOUT_MS, queue="unbounded (504 after 30 s)"), 10.0),
        ServerDef("mlserver", "int8", "MLServer, custom ONNX runtime + adaptive batching", _mlserver_check,
                  _mlserver_build,
                  _knobs(frontend_processes=1, parallel_workers=_cpus, intra_op_threads=1, max_batch_size=MAX_BATCH,
                         max_batch_time_ms=BATCH_TIMEOUT_MS, venv="separate (benchmarks/.venvs/mlserver)"), 15.0),
        ServerDef("rayserve", "int8", "Ray Serve, @serve.batch", _ray_check, _ray_build,
                  _knobs(ray_num_cpus=_cpus, replicas=_cpus, replica_num_cpus=1, intra_op_threads=1,
                         max_batch_size=MAX_BATCH, batch_wait_timeout_ms=BATCH_TIMEOUT_MS, max_ongoing_requests=64,
                         proxy="1 HTTP proxy actor", extra_processes="GCS, raylet, controller, agents"), 35.0),
        ServerDef("keras-flask", "keras", "seed-style Flask + Keras model.predict per request", _keras_check,
                  _keras_build,
                  _knobs(processes=1, server="Flask dev server, threaded", tf_intra_op=_cpus, tf_inter_op=1,
                         batching="none", model="model.keras (fp32)"), 25.0),
    )
}

TARGETS: dict[str, TargetDef] = {
    t.name: t
    for t in (
        TargetDef("imgserve", "imgserve-int8", "http", metrics=True, quick=True,
                  description="POST /predict (multipart), INT8, batching on"),
        TargetDef("imgserve-grpc", "imgserve-int8", "grpc", metrics=True, quick=True,
                  description="OIP gRPC ModelInfer (BYTES image), same server"),
        TargetDef("imgserve-nobatch", "imgserve-nobatch", "http", metrics=True, quick=True,
                  description="batching off (max batch 1)"),
        TargetDef("imgserve-fp32", "imgserve-fp32", "http", metrics=True, description="fp32 model"),
        TargetDef("fastapi", "fastapi", "http", quick=True, description="FastAPI + ORT batch 1"),
        TargetDef("litserve", "litserve", "http", quick=True, description="LitServe batching"),
        TargetDef("mlserver-grpc", "mlserver", "grpc", description="MLServer OIP gRPC, adaptive batching"),
        TargetDef("mlserver-rest", "mlserver", "http", path="/v2/models/{model}/infer", encoding="v2-json",
                  description="MLServer OIP REST (base64 in JSON), adaptive batching"),
        TargetDef("rayserve", "rayserve", "http", description="Ray Serve @serve.batch"),
        TargetDef("keras-flask", "keras-flask", "http", description="Flask + Keras predict per request"),
    )
}
DEFAULT_TARGETS = tuple(TARGETS)
QUICK_TARGETS = tuple(name for name, t in TARGETS.items() if t.quick)


def select_targets(spec: str | None, quick: bool) -> list[str]:
    """``all``, ``quick``, or a comma list of target names (a server name selects all its targets)."""
    if not spec:
        return list(QUICK_TARGETS if quick else DEFAULT_TARGETS)
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item == "all":
            names += DEFAULT_TARGETS
        elif item == "quick":
            names += QUICK_TARGETS
        elif item in TARGETS:
            names.append(item)
        elif item in SERVERS:
            names += [t.name for t in TARGETS.values() if t.server == item]
        else:
            raise ValueError(f"unknown target {item!r}; choose from {', '.join(TARGETS)} (or all, quick)")
    return list(dict.fromkeys(names))
