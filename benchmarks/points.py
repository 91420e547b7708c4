"""One target at one concurrency: sanity check, one measured point (wrk or the asyncio client), the median over
repeats. The suite (benchmarks/runner.py) calls these for every target it starts."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .bodies import HTTP_ENCODINGS
from .clients import build_client
from .corpus import Corpus
from .h2load import h2load_path, run_h2load
from .load import LoadSpec, run_closed_loop
from .procs import ServerFailed, ServerProcess
from .promstats import metrics_probe, server_side
from .runconfig import RunConfig, available_cpus
from .targets import TargetDef
from .wrk import run_wrk, wrk_path


def target_url(target: TargetDef, ports: dict[str, int], model: str) -> str:
    if target.protocol == "grpc":
        return f"grpc://127.0.0.1:{ports['grpc']}/{model}"
    return f"http://127.0.0.1:{ports['http']}{target.path.format(model=model)}"


def sanity_check(target: TargetDef, url: str, corpus: Corpus, deadline_s: float = 20.0) -> dict[str, Any]:
    """One real request must succeed before a sweep (retried briefly: some servers answer /health before
    their replicas are up). For JSON answers, the label is returned so the runner can compare it with the
    in-process prediction (same model + same preprocessing => same label)."""
    end = time.monotonic() + deadline_s
    last = ""
    if target.protocol == "grpc":
        _wait_for_listener(url, 5.0)
    while time.monotonic() < end:
        if target.protocol == "grpc":
            status = asyncio.run(_one_grpc(url, corpus))
            if status == "OK":
                return {"status": status}
            last = status
        else:
            client = build_client(url, corpus.images[:1], corpus.content_type, concurrency=1, timeout_s=10,
                                  encoding=target.encoding)
            req = client.requests[0]
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=req.body, headers=req.headers),
                                            timeout=10) as resp:  # noqa: S310 - loopback (checked by build_client)
                    body = json.loads(resp.read() or b"{}")
                    return {"status": str(resp.status), "label": _label_of(body)}
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.5)
    raise ServerFailed(f"first request to {url} failed: {last}")


def _wait_for_listener(url: str, timeout_s: float) -> None:
    """Fail fast (not after the whole retry window) when nothing listens on a gRPC target's port."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    end = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
                return
        except OSError as exc:
            if time.monotonic() > end:
                raise ServerFailed(f"nothing listens on {parts.hostname}:{parts.port} ({exc.strerror or exc}): "
                                   "this server does not serve OIP gRPC") from None
        time.sleep(0.25)


def _label_of(body: Any) -> str | None:
    """The top label of a JSON answer: imgserve/peer style ``{"label": …}`` or OIP ``outputs[name=label]``."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("label"), str):
        return body["label"]
    for out in body.get("outputs") or []:
        if isinstance(out, dict) and out.get("name") == "label" and out.get("data"):
            return str(out["data"][0])
    return None


async def _one_grpc(url: str, corpus: Corpus) -> str:
    client = build_client(url, corpus.images[:1], corpus.content_type, concurrency=1, timeout_s=10)
    async with client:
        return await client.send(0)


def client_for(target: TargetDef, cfg: RunConfig) -> str:
    """Which generator drives a point: a C one (wrk for HTTP, h2load for OIP gRPC: a few µs of CPU per request)
    unless asked otherwise (``--client python``, or ``wrk``: HTTP only), or a per-request sample file (--raw) is
    wanted, which only the Python generator writes. h2load only where imgserve's /metrics can tell which RPCs
    failed (it sees HTTP statuses only; benchmarks/h2load.py)."""
    if cfg.client == "python" or (cfg.client == "auto" and cfg.raw):
        return "python"
    if target.protocol == "http" and (cfg.client == "wrk" or wrk_path()):
        return "wrk"
    if target.protocol == "grpc" and cfg.client == "auto" and target.metrics and h2load_path():
        return "h2load"
    return "python"


def measure_point(target: TargetDef, url: str, corpus: Corpus, concurrency: int, cfg: RunConfig,
                  server: ServerProcess, metrics_url: str | None, raw_path: Path | None = None) -> dict[str, Any]:
    spec = LoadSpec(concurrency, cfg.duration_s, cfg.warmup_s, max_requests=cfg.max_requests, timeout_s=cfg.timeout_s)
    probe = metrics_probe(metrics_url, server.pids)
    sink: list[tuple[float, float, str]] | None = [] if raw_path else None
    generator = client_for(target, cfg)

    async def go() -> dict[str, Any]:
        if generator == "wrk":
            encode = HTTP_ENCODINGS[target.encoding]
            requests = [encode(d, corpus.content_type) for d in corpus.images]
            result = await run_wrk(url, requests, spec, probe=probe)
        elif generator == "h2load":
            result = await run_h2load(url, corpus.median_image(), spec, probe=probe)
        else:
            client = build_client(url, corpus.images, corpus.content_type, concurrency=concurrency,
                                  timeout_s=cfg.timeout_s, encoding=target.encoding)
            async with client:
                result = await run_closed_loop(client, spec, probe=probe, sink=sink)
        d = result.to_dict()
        d["server"] = server_side(d.pop("probes"))
        d["client"] = generator
        d["client_cpu_share_pct"] = round(100.0 * d["client_cpu_s"] / (d["window_s"] * available_cpus()), 1)
        d["loadavg_1m"] = round(os.getloadavg()[0], 2)
        return d

    point = asyncio.run(go())
    if raw_path and sink is not None and generator == "python":
        write_raw(raw_path, sink, cfg.warmup_s)
    return point


def write_raw(path: Path, samples: list[tuple[float, float, str]], warmup_s: float) -> None:
    """One line per request: start (s from the run's start), latency ms, status, in the window or not."""
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("start_s,latency_ms,status,warmup\n")
        for s0, s1, status in samples:
            fh.write(f"{s0:.6f},{(s1 - s0) * 1e3:.3f},{status},{int(s1 < warmup_s)}\n")


def aggregate(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each number over the repeats, and the throughput's spread (min, max)."""
    thr = [r["throughput"] for r in repeats]
    med = statistics.median(thr)
    lat = {k: round(statistics.median(r["latency_ms"][k] for r in repeats), 3) for k in repeats[0]["latency_ms"]}
    errors: dict[str, int] = {}
    for r in repeats:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    srv_keys = {k for r in repeats for k in (r.get("server") or {})}
    srv = {}
    for k in sorted(srv_keys):
        vals = [r["server"][k] for r in repeats if k in (r.get("server") or {})]
        srv[k] = round(statistics.median(vals), 3)
    def per_request_ms(get: Any) -> float | None:
        vals = [1e3 * v / r["ok"] for r in repeats if r["ok"] and (v := get(r)) is not None]
        return round(statistics.median(vals), 3) if vals else None

    return {
        "throughput": round(med, 2),
        "server_cpu_ms_per_request": per_request_ms(lambda r: (r.get("server") or {}).get("cpu_s")),
        "client_cpu_ms_per_request": per_request_ms(lambda r: r.get("client_cpu_s")),
        "client_cpu_share_pct": round(statistics.median(r.get("client_cpu_share_pct", 0.0) for r in repeats), 1),
        "client": repeats[0].get("client", "python"),
        "throughput_min": round(min(thr), 2),
        "throughput_max": round(max(thr), 2),
        "spread_pct": round(100.0 * (max(thr) - min(thr)) / med, 1) if med else None,
        "latency_ms": lat,
        "errors": errors,
        "ok": sum(r["ok"] for r in repeats),
        "server": srv,
        "repeats": len(repeats),
    }
