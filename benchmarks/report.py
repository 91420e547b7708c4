"""results.json -> report.md (+ PNG plots): one section per workload with the in-process limit, a summary
table per concurrency (throughput, p50/p95/p99, errors, ratio to the limit and to imgserve), the
perf_analyzer-style detail per target, what did not run and why, and every server's knobs."""

from __future__ import annotations

import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
REFERENCE_TARGET = "imgserve"


def _f(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "–"
    return f"{a / b:.2f}×"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in errors.items()) if errors else "0"


def _in_process_for(target: dict[str, Any], in_process: dict[str, Any]) -> dict[str, Any]:
    """The in-process figures of the model file the target serves (Keras: the fp32 ONNX one)."""
    variant = "fp32" if target["variant"] == "keras" else target["variant"]
    return in_process.get(variant) or in_process.get("int8") or {}


def _limit_for(target: dict[str, Any], in_process: dict[str, Any]) -> float | None:
    return _in_process_for(target, in_process).get("limit")


def overhead_ms(target: dict[str, Any], point: dict[str, Any], in_process: dict[str, Any]) -> float | None:
    """Issue 13's per-request overhead: the server's CPU ms per request beyond what decode + inference of one
    image cost in-process (``cpus`` fully busy threads at the in-process limit: cpus x 1000 / limit ms)."""
    ip = _in_process_for(target, in_process)
    cpu = point.get("server_cpu_ms_per_request")
    if cpu is None or not ip.get("limit"):
        return None
    return cpu - ip["cpus"] * 1000.0 / ip["limit"]


def paired_ratio(runs: list[dict[str, Any]], ref_runs: list[dict[str, Any]]) -> float | None:
    """Median over repeats of throughput ÷ the reference's throughput in the same repeat: with the points
    interleaved, each pair was measured on the same machine within a minute, so the machine's drift cancels."""
    ref = {r.get("repeat"): r["throughput"] for r in ref_runs}
    ratios = [r["throughput"] / ref[r.get("repeat")] for r in runs if ref.get(r.get("repeat"))]
    return statistics.median(ratios) if ratios else None


def _order_line(settings: dict[str, Any]) -> str:
    if settings.get("interleave"):
        return ("- Order: each workload's servers were all up together and their points alternated (round r: each "
                "concurrency, each target in turn; the in-process limit measured again before each round), so "
                "the machine's drift is shared by all; only the measured server ran, the others were paused "
                "(SIGSTOP); `÷ imgserve` is the median of the per-round ratios.")
    return "- Order: one server at a time (started, swept over every round, stopped); the machine may drift between servers."


def render_markdown(results: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    meta, settings = results["meta"], results["settings"]
    out = ["# imgserve benchmark", ""]
    if meta.get("label"):
        out += [f"> **{meta['label']}**", ""]
    out += [
        f"- Started {meta.get('started_at')} on `{meta.get('host')}` ({meta.get('cpu_model')}), "
        f"{settings['cpus']} CPUs available to the run; load average at start "
        f"{', '.join(str(x) for x in meta.get('loadavg_at_start', []))}. Commit `{meta.get('git_commit')}`"
        f"{' (dirty)' if meta.get('git_dirty') else ''}; took {_f(meta.get('elapsed_s'), 0)} s.",
        f"- Mode: {'quick' if settings['quick'] else 'full'}; closed loop at concurrency "
        f"{', '.join(map(str, settings['concurrency']))}; {settings['warmup_s']} s warm-up (not counted) + "
        f"{settings['duration_s']} s measured per point; {settings['repeats']} repeat(s), median shown, spread = "
        "(max − min) / median of throughput. Load generator, on the same machine: "
        + {"auto": "C ones when installed (wrk for HTTP, h2load for imgserve's gRPC), else one asyncio process",
           "wrk": "wrk (C) for HTTP, one asyncio process for gRPC"}.get(settings.get("client", "auto"), "one asyncio process")
        + "; each target's section names the one it used.",
        f"- Servers' CPU budget: {settings['cpus']} cores (lanes of 1 ORT thread each)"
        + (f", pinned to CPUs {settings['server_cpus']}" if settings.get("server_cpus") else ", not pinned") + ".",
        _order_line(settings),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(meta.get("versions", {}).items())),
        "",
    ]
    for name, wl in results["workloads"].items():
        out += _workload_section(name, wl, settings, (plots or {}).get(name))
    return "\n".join(out).rstrip() + "\n"


def _workload_section(name: str, wl: dict[str, Any], settings: dict[str, Any], plot: str | None) -> list[str]:
    out = [f"## Workload `{name}`", ""]
    if wl.get("status") != "ok":
        return out + [f"Not run: {wl.get('reason')}", ""]
    m, c = wl["model"], wl["corpus"]
    out += [
        f"{m.get('description') or 'Custom workload'}. Model `{m['model']}` v{m['version']} ({m.get('architecture') or 'n/a'}, input "
        f"{'×'.join(map(str, m['input']))}), registry `{m['models_dir']}`. Corpus `{c['kind']}`: {c['count']} "
        f"images, {_f(c['mean_bytes'], 0)} bytes on average ({c['source']}).",
        "",
        "### In-process limit (images/s, no server)",
        "",
    ]
    ip = wl.get("in_process", {})
    out += _in_process_table(ip)
    targets = wl.get("targets", {})
    ok = {t: v for t, v in targets.items() if v.get("status") == "ok" and v.get("points")}
    ref = {p["concurrency"]: p["throughput"] for p in ok.get(REFERENCE_TARGET, {}).get("points", [])}
    if ok:
        out += _peak_table(ok, ip, ref)
    out += _results_table(ok, ip, ref, ok.get(REFERENCE_TARGET, {}).get("runs") if settings.get("interleave") else None)
    if plot:
        out += [f"![{name}: throughput and p99 vs concurrency]({plot})", ""]
    out += _quiet_lines(ok)
    out += _target_details(ok)
    return out + _not_measured_and_knobs(targets, ok)


def _in_process_table(ip: dict[str, Any]) -> list[str]:
    out: list[str] = []
    methods = sorted({k for v in ip.values() for k in v["images_per_s"]})
    out += ["| method | " + " | ".join(ip) + " |", "|---|" + "---:|" * len(ip)]
    for meth in methods:
        row = [(f"**{_f(v['images_per_s'].get(meth))}**" if v["best"] == meth else _f(v["images_per_s"].get(meth)))
               for v in ip.values()]
        out.append(f"| {meth} | " + " | ".join(row) + " |")
    out += ["", "`loop_batchN`: one thread decodes N images then one ORT run with all cores; `pipelines_bN`: "
            "one decode+infer thread per core, each with a 1-thread session; `ort_alone_bN`: ORT only, "
            "pre-decoded input. The limit is the best of the decode-included methods (bold)."]
    rounds = {v: d["limit_rounds"] for v, d in ip.items() if len(d.get("limit_rounds") or []) > 1}
    if rounds:
        out.append("Measured before each round of the sweep; the figures are the medians. The limit in each round: "
                   + "; ".join(f"{v} {', '.join(_f(x) for x in xs)}" for v, xs in rounds.items())
                   + " (the machine's own drift during the run).")
    return out + [""]


def _peak_table(ok: dict[str, Any], ip: dict[str, Any], ref: dict[int, float]) -> list[str]:
    out = ["### Peak", "",
            "| target | peak req/s | at conc | p99 ms there | ÷ in-process limit | ÷ imgserve peak | p50 ms at conc 1 "
            "| server CPU ms/req | beyond decode+infer ms/req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ref_peak = max(ref.values()) if ref else None
    for tname, t in ok.items():
        best = max(t["points"], key=lambda p: p["throughput"])
        c1 = next((p for p in t["points"] if p["concurrency"] == 1), None)
        out.append(
            f"| {tname} | {_f(best['throughput'])} | {best['concurrency']} | {_f(best['latency_ms']['p99'], 2)} | "
            f"{_ratio(best['throughput'], _limit_for(t, ip))} | {_ratio(best['throughput'], ref_peak)} | "
            f"{_f(c1['latency_ms']['p50'], 2) if c1 else '–'} | {_f(best.get('server_cpu_ms_per_request'), 2)} | "
            f"{_f(overhead_ms(t, best, ip), 2)} |"
        )
    out += ["", "Server CPU ms per request (the server's whole process tree, at the peak point) is the steadier "
            "comparison when other jobs share the machine: there, throughput also depends on how much CPU each "
            "server's threads win from the others. *Beyond decode+infer*: that figure minus the in-process CPU per "
            "image (cores × 1000 ÷ the in-process limit), i.e. what the server spends on everything else: HTTP, "
            "framework layers, copies, batching, thread hand-offs, metrics (issue 13's per-request overhead).", ""]
    return out


def _results_table(ok: dict[str, Any], ip: dict[str, Any], ref: dict[int, float],
                   ref_runs: dict[str, list[dict[str, Any]]] | None) -> list[str]:
    out = ["### Results", "",
            "| target | conc | req/s | spread | p50 ms | p95 ms | p99 ms | errors | ÷ in-process limit | ÷ imgserve |",
            "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for tname, t in ok.items():
        limit = _limit_for(t, ip)
        for p in t["points"]:
            lat = p["latency_ms"]
            spread = f"{p['spread_pct']:.0f}%" if p.get("spread_pct") is not None and p["repeats"] > 1 else "–"
            c = p["concurrency"]
            paired = paired_ratio(t["runs"].get(str(c), []), ref_runs.get(str(c), [])) if ref_runs else None
            vs_ref = f"{paired:.2f}×" if paired else _ratio(p["throughput"], ref.get(c))
            out.append(
                f"| {tname} | {c} | {_f(p['throughput'])} | {spread} | {_f(lat['p50'], 2)} | "
                f"{_f(lat['p95'], 2)} | {_f(lat['p99'], 2)} | {_errors(p['errors'])} | {_ratio(p['throughput'], limit)} | "
                f"{vs_ref} |"
            )
    return out + [""]


def _quiet_lines(ok: dict[str, Any]) -> list[str]:
    """How clean the interleaved points were: the CPU the other (paused) servers used during a point, and how
    long a server took to go quiet after its point."""
    runs = [(tname, r) for tname, t in ok.items() for rs in t.get("runs", {}).values() for r in rs]
    background = [r["background_cpu_pct"] for _, r in runs if r.get("background_cpu_pct") is not None]
    out = []
    if background:
        out.append(f"The other servers, paused meanwhile, used {_f(statistics.median(background))} % of the machine "
                   f"during a point (median; at most {_f(max(background))} %).")
    settles = [(r["settle_s"], tname) for tname, r in runs if r.get("settle_s") is not None]
    if settles:
        longest, who = max(settles)
        out.append(f"After a point the runner waited for the server to go quiet: median {_f(statistics.median(s for s, _ in settles), 2)} s, "
                   f"longest {_f(longest, 1)} s ({who}).")
    return [" ".join(out), ""] if out else []


def _target_details(ok: dict[str, Any]) -> list[str]:
    out = ["### Per-target detail (perf_analyzer style)", ""]
    for tname, t in ok.items():
        match = t.get("label_matches_in_process")
        check = {True: "first answer's label matches the in-process prediction",
                 False: "**first answer's label differs from the in-process prediction**", None: ""}[match]
        client = (t["points"][0].get("client") if t.get("points") else None) or "python"
        out += [f"**{tname}** — {t.get('description', '')}; {t['protocol']} ({t.get('encoding')}), "
                f"load from {client}, ready in {_f(t.get('startup_s'), 1)} s{'; ' + check if check else ''}.", "", "```"]
        from .load import format_table

        out.append(format_table(t["points"]))
        out += ["```", ""]
        for key, what in (("server_cpu_ms_per_request", "Server CPU ms per request (its whole process tree)"),
                          ("client_cpu_ms_per_request", "Load generator CPU ms per request"),
                          ("client_cpu_share_pct", "Load generator share of the machine's CPU, %")):
            vals = [f"c={p['concurrency']}: {_f(p.get(key), 2)}" for p in t["points"] if p.get(key) is not None]
            if vals:
                out += [f"{what}: {', '.join(vals)}.", ""]
    if any(p.get("server", {}).get("queue_wait_ms") is not None for t in ok.values() for p in t["points"]):
        out += ["`srv queue ms`: mean over batches of the longest queue wait in the batch; `srv infer ms`: mean ORT "
                "time per batch; `batch`: mean rows per ORT run (imgserve's /metrics, diffed over the window).", ""]
    return out


def _not_measured_and_knobs(targets: dict[str, Any], ok: dict[str, Any]) -> list[str]:
    out: list[str] = []
    not_ok = {t: v for t, v in targets.items() if v.get("status") != "ok" or not v.get("points")}
    if not_ok:
        out += ["### Not measured", ""]
        for tname, t in not_ok.items():
            out.append(f"- **{tname}**: {t.get('status')} — {t.get('reason', 'no points')}")
        out.append("")

    knobs = {t.get("server"): t.get("knobs") for t in ok.values() if t.get("knobs")}
    if knobs:
        out += ["### Server knobs", "", "| server | knobs |", "|---|---|"]
        for server, k in knobs.items():
            out.append(f"| {server} | " + "; ".join(f"{a}={b}" for a, b in k.items()) + " |")
        out.append("")
    return out


def write_plots(results: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """One PNG per workload: throughput and p99 vs concurrency, one line per target, the limit dashed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib not installed: no plots")
        return {}
    files = {}
    for name, wl in results["workloads"].items():
        ok = {t: v for t, v in wl.get("targets", {}).items() if v.get("status") == "ok" and v.get("points")}
        if not ok:
            continue
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        for tname, t in ok.items():
            cs = [p["concurrency"] for p in t["points"]]
            thr = [p["throughput"] for p in t["points"]]
            lo = [p["throughput"] - p["throughput_min"] for p in t["points"]]
            hi = [p["throughput_max"] - p["throughput"] for p in t["points"]]
            style = "-" if tname.startswith("imgserve") else "--"
            ax1.errorbar(cs, thr, yerr=[lo, hi], marker="o", linestyle=style, capsize=3, label=tname)
            ax2.plot(cs, [p["latency_ms"]["p99"] for p in t["points"]], marker="o", linestyle=style, label=tname)
        limit = wl.get("in_process", {}).get("int8", {}).get("limit")
        top = max(p["throughput_max"] for t in ok.values() for p in t["points"])
        if limit and limit <= 3 * top:
            ax1.axhline(limit, color="grey", linestyle=":", label="in-process limit (int8)")
        titles = {"throughput": "throughput", "p99 latency": "p99 latency"}
        if limit and limit > 3 * top:  # far above every server (overhead-bound): a line would flatten the curves
            titles["throughput"] = f"throughput (in-process limit {limit:,.0f}/s: off scale)"
        for ax, title, unit in ((ax1, titles["throughput"], "requests/s"), (ax2, titles["p99 latency"], "ms")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(results["settings"]["concurrency"], [str(c) for c in results["settings"]["concurrency"]])
            ax.set_xlabel("concurrency (closed loop)")
            ax.set_ylabel(unit)
            ax.set_title(f"{name}: {title}")
            ax.grid(True, alpha=0.3)
        ax2.set_yscale("log")
        ax1.legend(fontsize=8, loc="best")
        label = results["meta"].get("label")
        if label:
            import textwrap

            fig.suptitle(textwrap.fill(label, 150), fontsize=8)
            fig.tight_layout(rect=(0, 0, 1, 0.93 if len(label) > 150 else 0.96))
        else:
            fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files[name] = path.name
    return files


def write_report(results: dict[str, Any], out_dir: Path, *, plots: bool = True) -> Path:
    out_dir = Path(out_dir)
    images = write_plots(results, out_dir) if plots else {}
    path = out_dir / "report.md"
    path.write_text(render_markdown(results, images))
    return path


def report_main(results_dir: Path) -> Path:
    """Re-render report.md and plots from an existing results.json."""
    results = json.loads((Path(results_dir) / "results.json").read_text())
    return write_report(results, Path(results_dir))
