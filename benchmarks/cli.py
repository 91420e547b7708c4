"""``python -m benchmarks …`` and ``imgserve bench …`` (same arguments, same functions):

- ``run``: the scripted suite (in-process limit, imgserve and peers at several concurrencies) -> results.json,
  report.md, PNG plots in ``--out``;
- ``report DIR``: re-render report.md and plots from DIR/results.json;
- ``load URL``: one sweep against a server you started yourself;
- ``corpus``: generate (or find) the cached image corpora;
- ``targets``: list workloads and targets, and whether each can run here;
- ``soak``: a long run at a steady share of peak with hot swaps and worker kills (issue 12's soak);
- ``prepare``: produce a workload's model if it is missing (e.g. the synthetic MobileNetV2, minutes).

Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import logging
from datetime import datetime
from pathlib import Path

DEFAULT_OUT_ROOT = Path(__file__).resolve().parent / "results"


def _csv(text: str | None) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _cpu_list(text: str | None) -> list[int] | None:
    """``0``, ``0-1``, ``0,2`` -> CPU ids."""
    if not text:
        return None
    cpus: list[int] = []
    for part in _csv(text):
        lo, _, hi = part.partition("-")
        cpus += list(range(int(lo), int(hi or lo) + 1))
    return cpus


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="short points, 1 repeat, imgserve + cheap peers (~3 min)")
    p.add_argument("--workloads", default=None,
                   help="comma list: fashion-mnist, mobilenetv2, or NAME=MODELS_DIR:MODEL[:CORPUS] (default: both presets)")
    p.add_argument("--targets", default=None, help="comma list of targets or servers, or all / quick (see `targets`)")
    p.add_argument("--concurrency", default="1,8,32,64", help="closed-loop concurrencies (default 1,8,32,64)")
    p.add_argument("--repeats", type=int, default=None, help="sweeps per server (default 3; 1 with --quick)")
    p.add_argument("--duration", type=float, default=None, help="measured seconds per point")
    p.add_argument("--warmup", type=float, default=None, help="unmeasured warm-up seconds before each point")
    p.add_argument("--inprocess-seconds", type=float, default=None, help="seconds per in-process measurement")
    p.add_argument("--budget", type=float, default=None, help="time budget in seconds (default 1200; 180 with --quick)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default benchmarks/results/<timestamp>)")
    p.add_argument("--models-dir", type=Path, default=None, help="registry root for the preset workloads")
    p.add_argument("--imgserve-dir", type=Path, default=None, help="where `bentoml serve .` runs (default: repo root)")
    p.add_argument("--processes", type=int, default=None,
                   help="front-end processes per server: imgserve workers, FastAPI's uvicorn workers, LitServe API "
                        "servers (default: one per CPU, imgserve's default)")
    p.add_argument("--server-cpus", default=None, help="pin servers to these CPUs, e.g. 1 or 0-1 (default: no pinning)")
    p.add_argument("--mlserver-python", default=None, help="interpreter with mlserver installed")
    p.add_argument("--label", default="", help="a note printed at the top of the report, e.g. 'shared load'")
    p.add_argument("--prepare", action="store_true", help="first produce missing workload models (prepare hooks)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots (JSON and Markdown only)")
    p.add_argument("--raw", action="store_true", help="also write every request (start, latency, status) to raw/*.csv.gz")
    p.add_argument("--sequential", action="store_true",
                   help="start and sweep one server at a time instead of all together with their points in turn "
                   "(less memory; but the machine's drift then lands between servers)")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                   help="load generator: auto (default): C ones when installed and --raw is not set, wrk for HTTP "
                   "and h2load (Debian's nghttp2-client) for imgserve's OIP gRPC; wrk: wrk for HTTP, Python for gRPC; "
                   "python: the asyncio generator for everything (per-status errors, --raw samples)")


def run_cmd(args: argparse.Namespace) -> int:
    from .procs import cleanup_on_exit
    from .runconfig import RunConfig
    from .runner import run_suite
    from .targets import select_targets
    from .workloads import DEFAULT_WORKLOADS, parse_workload

    workloads = [parse_workload(s, args.models_dir) for s in (_csv(args.workloads) or DEFAULT_WORKLOADS)]
    if args.prepare:
        _prepare_all(workloads)
    out = args.out or DEFAULT_OUT_ROOT / datetime.now().strftime("%Y%m%d-%H%M%S")
    cfg = RunConfig.preset(
        args.quick, workloads=workloads, targets=select_targets(args.targets, args.quick), out=out,
        concurrency=[int(c) for c in _csv(args.concurrency)], repeats=args.repeats, duration_s=args.duration,
        warmup_s=args.warmup, inprocess_s=args.inprocess_seconds, budget_s=args.budget,
        imgserve_dir=args.imgserve_dir.resolve() if args.imgserve_dir else None,
        processes=args.processes, server_cpus=_cpu_list(args.server_cpus), mlserver_python=args.mlserver_python,
        label=args.label,
        plots=not args.no_plots, raw=args.raw, client=args.client, interleave=not args.sequential,
    )
    with cleanup_on_exit():
        results = run_suite(cfg)
    print(summary(results))
    print(f"\nresults: {out / 'results.json'}\nreport:  {out / 'report.md'}")
    return 0


def summary(results: dict) -> str:
    """A short text version of the results for the terminal."""
    lines = []
    for name, wl in results["workloads"].items():
        if wl.get("status") != "ok":
            lines.append(f"{name}: not run ({wl.get('reason')})")
            continue
        limits = ", ".join(f"{v}: {d['limit']:.0f}/s ({d['best']})" for v, d in wl.get("in_process", {}).items())
        lines.append(f"{name}: in-process limit {limits}")
        for tname, t in wl["targets"].items():
            if t.get("status") != "ok" or not t.get("points"):
                lines.append(f"  {tname:<18} {t.get('status')}: {str(t.get('reason', ''))[:150]}")
                continue
            pts = "  ".join(f"c{p['concurrency']}={p['throughput']:.0f}/s p99={p['latency_ms']['p99']:.1f}ms"
                            + (f" err={sum(p['errors'].values())}" if p["errors"] else "") for p in t["points"])
            lines.append(f"  {tname:<18} {pts}")
    return "\n".join(lines)


def report_cmd(args: argparse.Namespace) -> int:
    from .report import report_main

    print(report_main(args.dir))
    return 0


def load_cmd(args: argparse.Namespace) -> int:
    from .load import load_main

    return load_main(args)


def corpus_cmd(args: argparse.Namespace) -> int:
    from .corpus import KINDS, load_corpus

    for kind in _csv(args.kinds) or list(KINDS):
        c = load_corpus(kind, args.count)
        d = c.describe()
        print(f"{kind}: {d['count']} images, {d['mean_bytes']} bytes mean, {d['source']} -> {c.path}")
    return 0


def targets_cmd(args: argparse.Namespace) -> int:
    from .targets import QUICK_TARGETS, SERVERS, TARGETS, BuildContext
    from .workloads import PRESETS, Unavailable, parse_workload, resolve

    for spec in _csv(args.workloads) or list(PRESETS):
        w = parse_workload(spec, args.models_dir)
        try:
            r = resolve(w)
            print(f"workload {w.name}: {r.card.name} v{r.version} in {r.root} ({', '.join(sorted(r.files))}"
                  f"{', keras' if r.keras_file else ''}), corpus {w.corpus}")
        except Unavailable as exc:
            print(f"workload {w.name}: unavailable: {exc}")
            r = None
        for t in TARGETS.values():
            s = SERVERS[t.server]
            if r is not None:
                ctx = BuildContext(r, 1, (args.imgserve_dir or Path(__file__).resolve().parent.parent))
                why = s.check(ctx)
            else:
                why = "workload unavailable"
            quick = " [quick]" if t.name in QUICK_TARGETS else ""
            print(f"  {t.name:<17} {t.protocol:<5} {s.description}{quick}: {'ready' if not why else why}")
    return 0


def _prepare_all(workloads: list) -> None:
    from .workloads import Unavailable, prepare

    for w in workloads:
        try:
            print(f"{w.name}: {'prepared' if prepare(w) else 'already present'} in {w.registry_root()}")
        except Unavailable as exc:
            print(f"{w.name}: {exc}")


def prepare_cmd(args: argparse.Namespace) -> int:
    from .workloads import DEFAULT_WORKLOADS, parse_workload

    _prepare_all([parse_workload(s, args.models_dir) for s in (_csv(args.workloads) or DEFAULT_WORKLOADS)])
    return 0


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_command", metavar="ACTION", required=True)
    p = sub.add_parser("run", help="run the benchmark suite")
    add_run_args(p)
    p.set_defaults(func=run_cmd)

    p = sub.add_parser("report", help="re-render report.md and plots from DIR/results.json")
    p.add_argument("dir", type=Path, help="a results directory written by `run`")
    p.set_defaults(func=report_cmd)

    p = sub.add_parser("load", help="closed-loop load against a running server (loopback only)")
    from .load import add_load_args

    add_load_args(p)
    p.set_defaults(func=load_cmd)

    p = sub.add_parser("corpus", help="generate/cache the image corpora")
    p.add_argument("--kinds", default=None, help="jpeg-640x480, png-28-gray (default both)")
    p.add_argument("--count", type=int, default=None, help="images per corpus")
    p.set_defaults(func=corpus_cmd)

    p = sub.add_parser("targets", help="list targets and whether each can run here")
    p.add_argument("--workloads", default=None, help="comma list of workloads (default: the presets)")
    p.add_argument("--models-dir", type=Path, default=None, help="registry root for the preset workloads")
    p.add_argument("--imgserve-dir", type=Path, default=None, help="where `bentoml serve .` runs (default: repo root)")
    p.set_defaults(func=targets_cmd)

    p = sub.add_parser("soak", help="hold ~70 %% of peak load for a long time with hot swaps and worker kills")
    from .soak import add_soak_args, soak_cmd

    add_soak_args(p)
    p.set_defaults(func=soak_cmd)

    p = sub.add_parser("prepare", help="produce missing workload models via their prepare hooks (may take minutes)")
    p.add_argument("workloads", nargs="?", default=None, help="comma list (default: the presets)")
    p.add_argument("--models-dir", type=Path, default=None, help="registry root to write the models into")
    p.set_defaults(func=prepare_cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    add_subcommands(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return int(args.func(args) or 0)
