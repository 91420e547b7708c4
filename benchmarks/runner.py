"""The scripted suite: for each workload, the in-process limit, then each selected server started in turn
(warmed, checked with one request, swept over the concurrencies ``repeats`` times, stopped), then
results.json + report.md + plots in the output directory.

The suite keeps to a time budget: a server whose estimated sweep no longer fits is reported as skipped,
not started. Results are rewritten after every server, so an interrupted run still leaves its numbers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .corpus import Corpus, load_corpus
from .load import HTTP_ENCODINGS, LoadSpec, build_client, run_closed_loop
from .procs import ServerFailed, ServerProcess, free_port, running
from .promstats import metrics_probe, server_side
from .targets import SERVERS, TARGETS, BuildContext, TargetDef
from .workloads import ResolvedWorkload, Unavailable, Workload, resolve
from .wrk import run_wrk, wrk_path

log = logging.getLogger(__name__)
SCHEMA = 1
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


# ---- one target ------------------------------------------------------------------------------------------
def _url(target: TargetDef, ports: dict[str, int], model: str) -> str:
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


def http_client_for(target: TargetDef, cfg: RunConfig) -> str:
    """Which generator drives an HTTP point: wrk (a few µs of CPU per request) unless asked otherwise, or a
    per-request sample file (--raw) is wanted, which only the Python generator writes."""
    if target.protocol != "http" or cfg.client == "python" or (cfg.client == "auto" and (cfg.raw or not wrk_path())):
        return "python"
    return "wrk"


def measure_point(target: TargetDef, url: str, corpus: Corpus, concurrency: int, cfg: RunConfig,
                  server: ServerProcess, metrics_url: str | None, raw_path: Path | None = None) -> dict[str, Any]:
    spec = LoadSpec(concurrency, cfg.duration_s, cfg.warmup_s, max_requests=cfg.max_requests, timeout_s=cfg.timeout_s)
    probe = metrics_probe(metrics_url, server.pids)
    sink: list[tuple[float, float, str]] | None = [] if raw_path else None
    generator = http_client_for(target, cfg)

    async def go() -> dict[str, Any]:
        if generator == "wrk":
            encode = HTTP_ENCODINGS[target.encoding]
            requests = [encode(d, corpus.content_type) for d in corpus.images]
            result = await run_wrk(url, requests, spec, probe=probe)
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


# ---- the suite ---------------------------------------------------------------------------------------------
class Suite:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.cpus = cfg.cpus or available_cpus()
        self.t0 = time.monotonic()
        self.deadline = cfg.budget_s
        cfg.out.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {
            "schema": SCHEMA,
            "meta": machine_meta(cfg, self.cpus),
            "settings": {
                "quick": cfg.quick, "concurrency": cfg.concurrency, "duration_s": cfg.duration_s,
                "warmup_s": cfg.warmup_s, "repeats": cfg.repeats, "inprocess_s": cfg.inprocess_s,
                "budget_s": cfg.budget_s, "timeout_s": cfg.timeout_s, "max_requests": cfg.max_requests,
                "cpus": self.cpus, "processes": min(cfg.processes or self.cpus, self.cpus),
                "server_cpus": cfg.server_cpus, "targets": cfg.targets,
                "imgserve_dir": str(cfg.imgserve_dir),
            },
            "workloads": {},
        }

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def save(self) -> Path:
        path = self.cfg.out / "results.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str))
        os.replace(tmp, path)
        return path

    def run(self) -> dict[str, Any]:
        try:
            n = len(self.cfg.workloads)
            for i, workload in enumerate(self.cfg.workloads):
                # Each workload may use its share of the budget plus whatever the earlier ones left.
                self.deadline = self.cfg.budget_s * (i + 1) / n
                self.run_workload(workload)
        finally:
            self.results["meta"]["elapsed_s"] = round(self.elapsed(), 1)
            self.results["meta"]["finished_at"] = _now()
            self.save()
            from .report import write_report

            write_report(self.results, self.cfg.out, plots=self.cfg.plots)
        return self.results

    def run_workload(self, workload: Workload) -> None:
        entry: dict[str, Any] = {"workload": asdict(workload), "targets": {}}
        entry["workload"]["models_dir"] = str(workload.registry_root())
        self.results["workloads"][workload.name] = entry
        try:
            resolved = resolve(workload)
        except Unavailable as exc:
            entry.update(status="unavailable", reason=str(exc))
            for name in self.cfg.targets:
                entry["targets"][name] = {"status": "unavailable", "reason": "workload unavailable: " + str(exc)}
            log.warning("workload %s unavailable: %s", workload.name, exc)
            self.save()
            return
        corpus = load_corpus(workload.corpus, workload.corpus_count)
        entry.update(status="ok", model=resolved.describe(), corpus=corpus.describe())
        log.info("workload %s: %s v%s, corpus %s x%d", workload.name, resolved.card.name, resolved.version,
                 corpus.kind, len(corpus.images))

        variants = sorted({SERVERS[TARGETS[t].server].variant for t in self.cfg.targets} & set(resolved.files))
        variants = variants or sorted(resolved.files)[:1]
        entry["in_process"] = {}
        entry["reference_labels"] = {}
        from . import inprocess

        for variant in variants:
            log.info("in-process limit (%s, %s)", workload.name, variant)
            entry["in_process"][variant] = inprocess.measure(
                resolved.files[variant], resolved.card, variant, corpus.images, cpus=self.cpus,
                duration_s=self.cfg.inprocess_s,
            )
        for variant in resolved.files:  # every file: the Keras peer is checked against the fp32 one
            entry["reference_labels"][variant] = reference_label(resolved, variant, corpus)
        self.save()

        ctx = BuildContext(resolved, self.cpus, self.cfg.imgserve_dir, mlserver_python=self.cfg.mlserver_python,
                           server_cpus=self.cfg.server_cpus, processes=min(self.cfg.processes or self.cpus, self.cpus))
        by_server: dict[str, list[TargetDef]] = {}
        for name in self.cfg.targets:
            by_server.setdefault(TARGETS[name].server, []).append(TARGETS[name])
        for server_name, targets in by_server.items():
            self.run_server(entry, ctx, server_name, targets, corpus)
            self.save()

    def run_server(self, entry: dict[str, Any], ctx: BuildContext, server_name: str, targets: list[TargetDef],
                   corpus: Corpus) -> None:
        sdef = SERVERS[server_name]
        cfg = self.cfg

        def mark(status: str, reason: str, names: list[TargetDef] = targets) -> None:
            for t in names:
                entry["targets"][t.name] = {"status": status, "reason": reason, "server": server_name,
                                            "protocol": t.protocol, "variant": sdef.variant}
            log.warning("%s: %s: %s", ", ".join(t.name for t in names), status, reason)

        if sdef.variant != "keras" and sdef.variant not in ctx.workload.files:
            return mark("unavailable", f"no {sdef.variant} model file in {ctx.workload.card.name} v{ctx.workload.version}")
        reason = sdef.check(ctx)
        if reason:
            return mark("unavailable", reason)
        estimate = sdef.startup_estimate_s + len(targets) * len(cfg.concurrency) * cfg.repeats * cfg.point_cost_s()
        if self.elapsed() + estimate > self.deadline:
            return mark("skipped", f"time budget: needs ~{estimate:.0f}s, {self.deadline - self.elapsed():.0f}s left "
                                   f"of this workload's share (--budget {cfg.budget_s:.0f})")

        ports = {"http": free_port(), "grpc": free_port()}
        spec = sdef.build(ctx, ports)
        log_path = cfg.out / "logs" / f"{entry['workload']['name']}-{server_name}.log"
        knobs = sdef.knobs(ctx)
        try:
            with running(spec, log_path) as server:
                live: list[TargetDef] = []
                for t in targets:
                    url = _url(t, ports, ctx.workload.card.name)
                    try:
                        first = sanity_check(t, url, corpus)
                    except ServerFailed as exc:
                        mark("failed", str(exc), [t])
                        continue
                    ref = entry["reference_labels"].get(sdef.variant if sdef.variant != "keras" else "fp32")
                    entry["targets"][t.name] = {
                        "status": "ok", "server": server_name, "protocol": t.protocol, "variant": sdef.variant,
                        "encoding": t.encoding if t.protocol == "http" else "raw BYTES", "url": url,
                        "description": t.description, "knobs": knobs, "startup_s": round(server.ready_s or 0, 2),
                        "first_label": first.get("label"),
                        "label_matches_in_process": (first.get("label") == ref) if first.get("label") and ref else None,
                        "runs": {str(c): [] for c in cfg.concurrency}, "points": [],
                    }
                    live.append(t)
                self.sweep(entry, live, ports, ctx, corpus, server)
        except ServerFailed as exc:
            failed = [t for t in targets if entry["targets"].get(t.name, {}).get("status") != "ok"]
            mark("failed", str(exc), failed or targets)

    def sweep(self, entry: dict[str, Any], live: list[TargetDef], ports: dict[str, int], ctx: BuildContext,
              corpus: Corpus, server: ServerProcess) -> None:
        cfg = self.cfg
        for rep in range(cfg.repeats):
            for c in cfg.concurrency:
                for t in live:
                    if self.elapsed() > self.deadline + 30:
                        entry["targets"][t.name]["note"] = "time budget ran out mid-sweep"
                        continue
                    url = _url(t, ports, ctx.workload.card.name)
                    metrics_url = f"http://127.0.0.1:{ports['http']}/metrics" if t.metrics else None
                    raw = (cfg.out / "raw" / f"{entry['workload']['name']}-{t.name}-c{c}-r{rep}.csv.gz"
                           if cfg.raw else None)
                    point = measure_point(t, url, corpus, c, cfg, server, metrics_url, raw)
                    point["repeat"] = rep
                    entry["targets"][t.name]["runs"][str(c)].append(point)
                    log.info("%-16s %-14s c=%-3d rep=%d  %8.1f req/s  p50 %.2f ms  p99 %.2f ms  errors %s",
                             entry["workload"]["name"], t.name, c, rep, point["throughput"],
                             point["latency_ms"]["p50"], point["latency_ms"]["p99"], point["errors"] or 0)
        for t in live:
            runs = entry["targets"][t.name]["runs"]
            entry["targets"][t.name]["points"] = [
                {"concurrency": int(c), **aggregate(rs)} for c, rs in runs.items() if rs
            ]


def reference_label(resolved: ResolvedWorkload, variant: str, corpus: Corpus) -> str:
    from inference.session import OnnxClassifier

    from .inprocess import _decode

    model = OnnxClassifier.load(resolved.files[variant], resolved.card, variant)
    probs = model.predict_pixels(_decode(corpus.images[0], resolved.card)[None])
    return resolved.card.labels[int(probs[0].argmax())]


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
        "started_at": _now(),
        "label": cfg.label,
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpus_available": cpus,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "versions": versions,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def run_suite(cfg: RunConfig) -> dict[str, Any]:
    """Run everything ``cfg`` asks for; returns the results dict (also written to ``cfg.out``)."""
    return Suite(cfg).run()
