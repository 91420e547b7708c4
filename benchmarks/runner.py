"""The scripted suite: for each workload, the in-process limit, then each selected server started in turn
(warmed, checked with one request, swept over the concurrencies ``repeats`` times, stopped), then
results.json + report.md + plots in the output directory.

The suite keeps to a time budget: a server whose estimated sweep no longer fits is reported as skipped,
not started. Results are rewritten after every server, so an interrupted run still leaves its numbers.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training import progress

from .corpus import Corpus, load_corpus
from .points import aggregate, measure_point, sanity_check, target_url
from .procs import ServerFailed, ServerProcess, free_port, running
from .runconfig import RunConfig, available_cpus
from .targets import SERVERS, TARGETS, BuildContext, TargetDef
from .workloads import ResolvedWorkload, Unavailable, Workload, resolve

log = logging.getLogger(__name__)
SCHEMA = 1


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
                "server_cpus": cfg.server_cpus, "targets": cfg.targets, "client": cfg.client,
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
                    url = target_url(t, ports, ctx.workload.card.name)
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
        total = cfg.repeats * len(cfg.concurrency) * len(live)
        with progress.bar(f"{entry['workload']['name']}: {', '.join(t.name for t in live)}", total, log) as report:
            for rep in range(cfg.repeats):
                for c in cfg.concurrency:
                    for t in live:
                        if self.elapsed() > self.deadline + 30:
                            entry["targets"][t.name]["note"] = "time budget ran out mid-sweep"
                            continue
                        point = self._point(entry, t, c, rep, ports, ctx, corpus, server)
                        report(f"{entry['workload']['name']:<16} {t.name:<14} c={c:<3d} rep={rep}  "
                               f"{point['throughput']:8.1f} req/s  p50 {point['latency_ms']['p50']:.2f} ms  "
                               f"p99 {point['latency_ms']['p99']:.2f} ms  errors {point['errors'] or 0}")
        for t in live:
            runs = entry["targets"][t.name]["runs"]
            entry["targets"][t.name]["points"] = [
                {"concurrency": int(c), **aggregate(rs)} for c, rs in runs.items() if rs
            ]

    def _point(self, entry: dict[str, Any], t: TargetDef, c: int, rep: int, ports: dict[str, int],
               ctx: BuildContext, corpus: Corpus, server: ServerProcess) -> dict[str, Any]:
        cfg = self.cfg
        url = target_url(t, ports, ctx.workload.card.name)
        metrics_url = f"http://127.0.0.1:{ports['http']}/metrics" if t.metrics else None
        raw = cfg.out / "raw" / f"{entry['workload']['name']}-{t.name}-c{c}-r{rep}.csv.gz" if cfg.raw else None
        point = measure_point(t, url, corpus, c, cfg, server, metrics_url, raw)
        point["repeat"] = rep
        entry["targets"][t.name]["runs"][str(c)].append(point)
        return point


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
