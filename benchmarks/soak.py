"""Soak: hold a steady share of the server's peak load for a long time, hot-swap the model every minute and
kill -9 one worker every few minutes, and record what clients saw and what the workers' memory did.

``python -m benchmarks soak --minutes 30`` starts ``bentoml serve .`` on a private copy of the registry (the
production version and a byte-identical copy of it registered as the next version, so every swap is a real
load + warm + switch), measures the peak with wrk (closed loop), then runs wrk in ``chunk_s`` chunks throttled
to ``load_fraction`` of that peak (each connection pauses between requests; the pause is re-tuned after each
chunk). During a chunk a timer performs the due event: promote the other version, or SIGKILL one worker (BentoML's
arbiter starts a new one). The pass criteria, from issue 12: failed requests only in chunks where a worker was
killed; each worker's RSS within 10 % of what it had one minute into its life.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bodies import HTTP_ENCODINGS
from .load import LoadSpec
from .procs import ServerSpec, free_port, running
from .soak_report import render, summarize
from .wrk import run_wrk

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class SoakConfig:
    out: Path
    minutes: float = 30.0
    chunk_s: int = 10
    swap_every_s: float = 60.0
    kill_every_s: float = 300.0
    load_fraction: float = 0.7
    connections: int = 16
    workers: int = 2
    models_dir: Path = REPO_ROOT / "models"
    model: str = "fashion-mnist"
    corpus: str = "png-28-gray"
    rss_settle_s: float = 60.0  # a worker's baseline RSS is taken this long into its life

    def __post_init__(self) -> None:
        if not (0 < self.load_fraction <= 1) or self.chunk_s < 1 or self.minutes <= 0 or self.connections < 1:
            raise ValueError(f"invalid soak settings: {self}")


@dataclass
class Chunk:
    t_s: float
    throughput: float
    ok: int
    errors: dict[str, int]
    p99_ms: float
    delay_ms: float
    events: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)


def prepare_registry(cfg: SoakConfig, dest: Path) -> tuple[int, int]:
    """Copy the model's registry into ``dest`` and register a copy of its production version as the next
    version: the two versions the soak swaps between."""
    from inference.registry import Registry

    shutil.rmtree(dest / cfg.model, ignore_errors=True)  # the soak's own copy from an earlier run
    shutil.copytree(cfg.models_dir / cfg.model, dest / cfg.model)
    registry = Registry(dest)
    current = registry.resolve(cfg.model, "production")
    source = registry.version_dir(cfg.model, current)
    with registry.stage(cfg.model) as staged:
        for f in ("model.onnx", "model.int8.onnx"):
            shutil.copy2(source / f, staged / f)
        card = registry.register(staged, registry.card(cfg.model, current), set_production_if_none=False)
    return current, card.version


def worker_pids(server_pid: int) -> list[int]:
    """BentoML's worker processes under the arbiter (their command line names the worker module)."""
    import psutil

    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    pids = []
    for child in children:
        try:
            if any("worker" in part for part in child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return sorted(pids)


def _started_at(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return float("inf")


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def _served_versions(base: str, tries: int = 6) -> list[int]:
    seen = set()
    for _ in range(tries):
        try:
            with urllib.request.urlopen(f"{base}/model", timeout=5) as resp:
                seen.add(int(json.load(resp)["version"]))
        except (OSError, ValueError, KeyError):
            continue
    return sorted(seen)


class Events:
    """The swap and kill schedule; each due event runs on a timer in the middle of a chunk, under load."""

    def __init__(self, cfg: SoakConfig, models: Path, versions: tuple[int, int], server_pid: int):
        self.cfg, self.models, self.versions, self.server_pid = cfg, models, versions, server_pid
        self.next_swap, self.next_kill = cfg.swap_every_s, cfg.kill_every_s
        self.serving = versions[0]

    def due(self, elapsed_s: float) -> list[str]:
        todo = []
        if self.cfg.swap_every_s and elapsed_s >= self.next_swap:
            self.next_swap += self.cfg.swap_every_s
            todo.append("swap")
        if self.cfg.kill_every_s and elapsed_s >= self.next_kill:
            self.next_kill += self.cfg.kill_every_s
            todo.append("kill")
        return todo

    def perform(self, what: str, record: list[str]) -> None:
        from inference.registry import Registry

        if what == "swap":
            a, b = self.versions
            self.serving = b if self.serving == a else a
            Registry(self.models).promote(self.cfg.model, self.serving, reason="soak")
            record.append(f"promote v{self.serving}")
        elif what == "kill":
            # the youngest worker (the last one started): the oldest then lives through the whole soak, and its
            # RSS from minute 1 to the end is the long-run figure; a replacement lives minutes at most
            pids = sorted(worker_pids(self.server_pid), key=_started_at)
            if pids:
                os.kill(pids[-1], signal.SIGKILL)
                record.append(f"kill -9 worker {pids[-1]}")


async def _peak(url: str, requests: list[Any], cfg: SoakConfig) -> dict[str, Any]:
    return (await run_wrk(url, requests, LoadSpec(max(cfg.connections, 32), 10.0, 2.0))).to_dict()


def _retune(delay_ms: float, point: dict[str, Any], target: float, conns: int) -> float:
    """Each connection's cycle is pause + latency; choose the pause that makes conns / cycle = target."""
    if point["throughput"] <= 0:
        return delay_ms
    latency_ms = max(0.0, 1000.0 * conns / point["throughput"] - delay_ms)
    return max(0.0, 1000.0 * conns / target - latency_ms)


def run_soak(cfg: SoakConfig) -> dict[str, Any]:
    """Run the soak; returns (and writes to ``cfg.out``) the timeline and the pass figures."""
    from .corpus import load_corpus

    cfg.out.mkdir(parents=True, exist_ok=True)
    models = cfg.out / "models"
    versions = prepare_registry(cfg, models)
    corpus = load_corpus(cfg.corpus, 64)
    requests = [HTTP_ENCODINGS["multipart"](d, corpus.content_type) for d in corpus.images]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    spec = ServerSpec(
        "imgserve-soak", [sys.executable, "-m", "bentoml", "serve", ".", "--host", "127.0.0.1", "--port", str(port)],
        ready_url=f"{base}/readyz", cwd=REPO_ROOT,
        env={"IMGSERVE_MODELS_DIR": str(models), "IMGSERVE_MODEL": cfg.model, "IMGSERVE_WORKERS": str(cfg.workers),
             "IMGSERVE_GRPC_PORT": "0", "IMGSERVE_ACCESS_LOG": "false", "IMGSERVE_LOG_LEVEL": "WARNING",
             "IMGSERVE_POLL_INTERVAL_S": "1", "PYTHONPATH": str(REPO_ROOT)},
    )
    with running(spec, cfg.out / "server.log") as server:
        peak = asyncio.run(_peak(f"{base}/predict", requests, cfg))
        target = cfg.load_fraction * peak["throughput"]
        chunks = _chunks(cfg, f"{base}/predict", requests, target, Events(cfg, models, versions, server.proc.pid))
    result = summarize(cfg, peak, target, versions, chunks)
    (cfg.out / "soak.json").write_text(json.dumps(result, indent=1))
    (cfg.out / "soak.md").write_text(render(result))
    return result


def _chunks(cfg: SoakConfig, url: str, requests: list[Any], target: float, events: Events) -> list[Chunk]:
    conns, delay_ms = cfg.connections, 1000.0 * cfg.connections / max(target, 1.0)
    chunks: list[Chunk] = []
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < cfg.minutes * 60:
        record: list[str] = []
        timers = [threading.Timer(cfg.chunk_s / 2, events.perform, (what, record)) for what in events.due(elapsed)]
        for timer in timers:
            timer.start()
        point = asyncio.run(run_wrk(url, requests, LoadSpec(conns, cfg.chunk_s, 0.0), delay_ms=delay_ms)).to_dict()
        for timer in timers:
            timer.join()
        chunk = Chunk(round(elapsed, 1), round(point["throughput"], 1), point["ok"], point["errors"],
                      point["latency_ms"]["p99"], round(delay_ms, 2), record, _served_versions(url.rsplit("/", 1)[0]))
        for pid in worker_pids(events.server_pid):
            if (rss := _rss_mb(pid)) is not None:
                chunk.rss_mb[str(pid)] = round(rss, 1)
        chunks.append(chunk)
        log.info("t=%5.0fs %7.1f req/s errors=%s %s versions=%s rss=%s", elapsed, chunk.throughput,
                 chunk.errors or 0, "; ".join(record), chunk.versions, chunk.rss_mb)
        delay_ms = _retune(delay_ms, point, target, conns)
    return chunks


def add_soak_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--minutes", type=float, default=30.0, help="how long to hold the load (default 30)")
    p.add_argument("--swap-every", type=float, default=60.0, help="seconds between promotes (0: none)")
    p.add_argument("--kill-every", type=float, default=300.0, help="seconds between worker kills (0: none)")
    p.add_argument("--load", type=float, default=0.7, help="share of the measured peak to hold (default 0.7)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--workers", type=int, default=2, help="IMGSERVE_WORKERS of the server (default 2)")
    p.add_argument("--chunk", type=int, default=10, help="seconds per wrk run (the timeline's resolution)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / time.strftime("soak-%Y%m%d-%H%M%S"),
                   help="output directory (soak.json, soak.md, server.log)")


def soak_cmd(args: argparse.Namespace) -> int:
    """Exit status 0 only when the soak passed: no failed request outside a kill's chunk, RSS growth <= 10 %."""
    cfg = SoakConfig(out=args.out, minutes=args.minutes, swap_every_s=args.swap_every, kill_every_s=args.kill_every,
                     load_fraction=args.load, connections=args.connections, workers=args.workers, chunk_s=args.chunk)
    from .procs import cleanup_on_exit

    with cleanup_on_exit():  # an interrupted soak (Ctrl-C, SIGTERM) leaves no server behind
        result = run_soak(cfg)
    print(render(result))
    print(f"results: {cfg.out / 'soak.json'}")
    ok = result["failed_elsewhere"] == 0 and (result["max_rss_growth_pct"] or 0) <= 10.0
    return 0 if ok else 1
