"""The scripted suite: for each workload, the in-process limit, then the selected servers, then results.json +
report.md + plots in the output directory.

By default (``interleave``) every server of a workload is started and checked with one request first, then the
points alternate between them: round r measures each concurrency on each target in turn, and the in-process
limit is measured again before each round. On a shared VM the speed of the machine drifts by 10-20 % within
minutes; measured one server after another, that drift lands between servers and decides their order. Measured
in turn, every server sees the same machine, and each round's limit shows how far it drifted. Only the server
being measured runs: the others are paused (SIGSTOP, then SIGCONT for their own points), because some servers burn
CPU when idle. After each point the runner waits for the server to go quiet (a slow server keeps working on
abandoned requests after the load generator stops) before pausing it, and it records the CPU the paused servers
used meanwhile (none, if pausing works). ``interleave=False`` starts each server alone, as before.

The suite keeps to a time budget: servers whose estimated sweep no longer fits are reported as skipped, not
started. Results are rewritten after every step, so an interrupted run still leaves its numbers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inference.registry import utc_now
from training import progress

from .corpus import Corpus, load_corpus
from .machine import machine_meta
from .points import aggregate, measure_point, sanity_check, target_url
from .procs import ServerFailed, ServerProcess, free_port, running
from .promstats import process_tree_cpu
from .runconfig import RunConfig, available_cpus
from .targets import SERVERS, TARGETS, BuildContext, TargetDef
from .workloads import ResolvedWorkload, Unavailable, Workload, resolve

log = logging.getLogger(__name__)
SCHEMA = 1
QUIET_CORES = 0.1  # a server counts as idle below this many cores busy (a few background threads)
SETTLE_MAX_S = 15.0


@dataclass
class LiveTarget:
    """A target whose server is up and answered its first request."""

    target: TargetDef
    server: ServerProcess
    url: str
    metrics_url: str | None
    quiet_cores: float  # below this the server counts as idle again after a point (see settle)


# ---- the suite ---------------------------------------------------------------------------------------------
class Suite:
    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self.cpus = cfg.cpus or available_cpus()
        self.t0 = time.monotonic()
        self.deadline = cfg.budget_s
        self.points_done = 0
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
                "imgserve_dir": str(cfg.imgserve_dir), "interleave": cfg.interleave,
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
            self.results["meta"]["finished_at"] = utc_now()
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
        limits = InProcessLimits(entry, resolved, variants or sorted(resolved.files)[:1], corpus, self.cpus,
                                 self.cfg.inprocess_s)
        limits.measure()
        entry["reference_labels"] = {}
        for variant in resolved.files:  # every file: the Keras peer is checked against the fp32 one
            entry["reference_labels"][variant] = reference_label(resolved, variant, corpus)
        self.save()

        ctx = BuildContext(resolved, self.cpus, self.cfg.imgserve_dir, mlserver_python=self.cfg.mlserver_python,
                           server_cpus=self.cfg.server_cpus, processes=min(self.cfg.processes or self.cpus, self.cpus))
        by_server: dict[str, list[TargetDef]] = {}
        for name in self.cfg.targets:
            by_server.setdefault(TARGETS[name].server, []).append(TARGETS[name])
        groups = [by_server] if self.cfg.interleave else [{k: v} for k, v in by_server.items()]
        for group in groups:
            self.run_group(entry, ctx, group, corpus, limits if self.cfg.interleave else None)
            self.save()

    def run_group(self, entry: dict[str, Any], ctx: BuildContext, group: dict[str, list[TargetDef]],
                  corpus: Corpus, limits: InProcessLimits | None) -> None:
        """Start the group's servers together, sweep their targets in turn, stop them. ``limits``: measure the
        in-process limit again before every round after the first."""
        cfg = self.cfg
        planned = self.elapsed() + ((cfg.repeats - 1) * limits.cost_s() if limits is not None else 0.0)
        with contextlib.ExitStack() as stack:
            live: list[LiveTarget] = []
            for server_name, targets in group.items():
                sdef = SERVERS[server_name]
                planned += sdef.startup_estimate_s + len(targets) * len(cfg.concurrency) * cfg.repeats * cfg.point_cost_s()
                if planned > self.deadline:
                    _mark(entry, targets, server_name, "skipped",
                          f"time budget: the sweep needs ~{planned - self.elapsed():.0f}s, "
                          f"{self.deadline - self.elapsed():.0f}s left of this workload's share (--budget {cfg.budget_s:.0f})")
                    continue
                live += self.start_server(stack, entry, ctx, server_name, targets, corpus)
            self.save()
            self.sweep(entry, live, corpus, limits)

    def start_server(self, stack: contextlib.ExitStack, entry: dict[str, Any], ctx: BuildContext,
                     server_name: str, targets: list[TargetDef], corpus: Corpus) -> list[LiveTarget]:
        """Start one server (stopped when ``stack`` closes) and check each of its targets with one request."""
        sdef = SERVERS[server_name]
        if sdef.variant != "keras" and sdef.variant not in ctx.workload.files:
            _mark(entry, targets, server_name, "unavailable",
                  f"no {sdef.variant} model file in {ctx.workload.card.name} v{ctx.workload.version}")
            return []
        reason = sdef.check(ctx)
        if reason:
            _mark(entry, targets, server_name, "unavailable", reason)
            return []
        ports = {"http": free_port(), "grpc": free_port()}
        spec = sdef.build(ctx, ports)
        log_path = self.cfg.out / "logs" / f"{entry['workload']['name']}-{server_name}.log"
        try:
            server = stack.enter_context(running(spec, log_path))
        except ServerFailed as exc:
            _mark(entry, targets, server_name, "failed", str(exc))
            return []
        live: list[LiveTarget] = []
        for t in targets:
            url = target_url(t, ports, ctx.workload.card.name)
            try:
                first = sanity_check(t, url, corpus)
            except ServerFailed as exc:
                _mark(entry, [t], server_name, "failed", str(exc))
                continue
            ref = entry["reference_labels"].get(sdef.variant if sdef.variant != "keras" else "fp32")
            entry["targets"][t.name] = {
                "status": "ok", "server": server_name, "protocol": t.protocol, "variant": sdef.variant,
                "encoding": t.encoding if t.protocol == "http" else "raw BYTES", "url": url,
                "description": t.description, "knobs": sdef.knobs(ctx), "startup_s": round(server.ready_s or 0, 2),
                "first_label": first.get("label"),
                "label_matches_in_process": (first.get("label") == ref) if first.get("label") and ref else None,
                "runs": {str(c): [] for c in self.cfg.concurrency}, "points": [],
            }
            metrics_url = f"http://127.0.0.1:{ports['http']}/metrics" if t.metrics else None
            live.append(LiveTarget(t, server, url, metrics_url, QUIET_CORES))
        if live:  # what the server burns when nobody asks anything: settle() waits for this, not for zero
            idle = _cpu_meter([server.pids])
            time.sleep(1.0)
            idle_cores = idle()
            for lt in live:
                lt.quiet_cores = max(QUIET_CORES, 1.5 * idle_cores + 0.05)
                entry["targets"][lt.target.name]["idle_cores"] = round(idle_cores, 3)
        if self.cfg.interleave:  # runs only for its own points (ServerProcess.pause explains why)
            server.pause()
        return live

    def sweep(self, entry: dict[str, Any], live: list[LiveTarget], corpus: Corpus,
              limits: InProcessLimits | None) -> None:
        cfg = self.cfg
        name = entry["workload"]["name"]
        total = cfg.repeats * len(cfg.concurrency) * len(live)
        with progress.bar(f"{name}: {', '.join(lt.target.name for lt in live)}", total, log) as report:
            for rep in range(cfg.repeats):
                if rep and limits is not None and live:
                    limits.measure()
                    self.save()
                for c in cfg.concurrency:
                    for lt in list(live):
                        t = lt.target
                        if self.elapsed() > self.deadline + 30:
                            entry["targets"][t.name]["note"] = "time budget ran out mid-sweep"
                            continue
                        others = list(dict.fromkeys(x.server for x in live if x.server is not lt.server))
                        try:
                            point = self._point(entry, lt, c, rep, corpus, others)
                        except Exception as exc:  # one target's failure must not end the other targets' sweep
                            log.exception("%s: point c=%d rep=%d failed", t.name, c, rep)
                            entry["targets"][t.name].update(
                                status="failed", reason=f"point c={c} rep={rep}: {type(exc).__name__}: {exc}")
                            live.remove(lt)
                            continue
                        report(f"{name:<16} {t.name:<14} c={c:<3d} rep={rep}  "
                               f"{point['throughput']:8.1f} req/s  p50 {point['latency_ms']['p50']:.2f} ms  "
                               f"p99 {point['latency_ms']['p99']:.2f} ms  errors {point['errors'] or 0}")
        for lt in live:
            runs = entry["targets"][lt.target.name]["runs"]
            entry["targets"][lt.target.name]["points"] = [
                {"concurrency": int(c), **aggregate(rs)} for c, rs in runs.items() if rs
            ]

    def _point(self, entry: dict[str, Any], lt: LiveTarget, c: int, rep: int, corpus: Corpus,
               others: list[ServerProcess]) -> dict[str, Any]:
        cfg, t = self.cfg, lt.target
        raw = cfg.out / "raw" / f"{entry['workload']['name']}-{t.name}-c{c}-r{rep}.csv.gz" if cfg.raw else None
        if cfg.interleave:
            lt.server.resume()
        try:
            background = _cpu_meter([s.pids for s in others])
            point = measure_point(t, lt.url, corpus, c, cfg, lt.server, lt.metrics_url, raw)
            point["background_cpu_pct"] = round(100.0 * background() / self.cpus, 1) if others else None
            point["settle_s"] = round(settle(lt.server, lt.quiet_cores), 2)
        finally:
            if cfg.interleave:
                lt.server.pause()
        point["repeat"], point["seq"] = rep, self.points_done  # seq: the point's place in the run's order
        self.points_done += 1
        entry["targets"][t.name]["runs"][str(c)].append(point)
        return point


class InProcessLimits:
    """The workload's in-process limit per model variant, measured once per round; ``entry["in_process"]``
    always holds the merge of the rounds so far (benchmarks/inprocess.py ``merge_rounds``)."""

    def __init__(self, entry: dict[str, Any], resolved: ResolvedWorkload, variants: list[str], corpus: Corpus,
                 cpus: int, duration_s: float):
        self.entry, self.resolved, self.variants, self.corpus = entry, resolved, variants, corpus
        self.cpus, self.duration_s = cpus, duration_s
        self.rounds: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        self.last_s = 0.0

    def cost_s(self) -> float:
        """Seconds one round took (an estimate before the first: five methods per variant plus loading)."""
        return self.last_s or len(self.variants) * (5 * self.duration_s + 3.0)

    def measure(self) -> None:
        from . import inprocess

        t0 = time.monotonic()
        for variant in self.variants:
            log.info("in-process limit (%s, %s), round %d", self.entry["workload"]["name"], variant,
                     len(self.rounds[variant]))
            self.rounds[variant].append(inprocess.measure(
                self.resolved.files[variant], self.resolved.card, variant, self.corpus.images, cpus=self.cpus,
                duration_s=self.duration_s,
            ))
        self.entry["in_process"] = {v: inprocess.merge_rounds(rs) for v, rs in self.rounds.items()}
        self.last_s = time.monotonic() - t0


def _mark(entry: dict[str, Any], targets: list[TargetDef], server_name: str, status: str, reason: str) -> None:
    for t in targets:
        entry["targets"][t.name] = {"status": status, "reason": reason, "server": server_name,
                                    "protocol": t.protocol, "variant": SERVERS[server_name].variant}
    log.warning("%s: %s: %s", ", ".join(t.name for t in targets), status, reason)


def _cpu_meter(pid_sources: list[Callable[[], list[int]]]) -> Callable[[], float]:
    """Start measuring the CPU of some servers' process trees; the returned function gives the cores they kept
    busy on average since then."""
    def pids() -> list[int]:
        return [p for source in pid_sources for p in source()]

    t0, cpu0 = time.monotonic(), process_tree_cpu(pids) or 0.0
    return lambda: ((process_tree_cpu(pids) or 0.0) - cpu0) / max(1e-6, time.monotonic() - t0)


def settle(server: ServerProcess, quiet_cores: float, max_s: float = SETTLE_MAX_S) -> float:
    """Wait until ``server`` uses less than ``quiet_cores`` (0.25 s samples), at most ``max_s``; seconds waited.
    A server that queues more than it can answer keeps working after the load generator has gone; without this
    wait, that backlog would be measured as part of the next point (of any server)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_s:
        meter = _cpu_meter([server.pids])
        time.sleep(0.25)
        if meter() < quiet_cores:
            break
    return time.monotonic() - t0


def reference_label(resolved: ResolvedWorkload, variant: str, corpus: Corpus) -> str:
    from inference.session import OnnxClassifier

    from .inprocess import _decode

    model = OnnxClassifier.load(resolved.files[variant], resolved.card, variant)
    probs = model.predict_pixels(_decode(corpus.images[0], resolved.card)[None])
    return resolved.card.labels[int(probs[0].argmax())]


def run_suite(cfg: RunConfig) -> dict[str, Any]:
    """Run everything ``cfg`` asks for; returns the results dict (also written to ``cfg.out``)."""
    return Suite(cfg).run()
