"""The soak's figures and timeline (benchmarks/soak.py): what passes, what failed where, workers' memory."""

from __future__ import annotations

import statistics
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .soak import Chunk, SoakConfig

RSS_WINDOW_S = 60.0  # a worker's RSS is compared as medians over windows this long


def working_set_growth(chunks: list[Chunk], settle_s: float) -> dict[str, Any]:
    """The pass figure: each worker's last RSS against the largest worker RSS one minute into the soak (the
    warmed-up working set). A worker started after a kill warms up under full load, so its own first minute
    is no baseline; what matters is that no worker ends above the working set the first ones settled at."""
    settled = next((c for c in chunks if c.t_s >= settle_s and c.rss_mb), None)
    if settled is None:
        return {"baseline_mb": None, "end_mb": {}, "growth_pct": None}
    base = max(settled.rss_mb.values())
    last: dict[str, float] = {}
    for c in chunks:
        last.update(c.rss_mb)
    alive = chunks[-1].rss_mb
    end = {pid: mb for pid, mb in last.items() if pid in alive}
    return {"baseline_mb": base, "baseline_t_s": settled.t_s, "end_mb": end,
            "growth_pct": round(100.0 * (max(end.values()) - base) / base, 1) if end else None}


def survivor_growth(chunks: list[Chunk], rss: dict[str, dict[str, float]], working_set: dict[str, Any]) -> float | None:
    """The pass figure: RSS growth, from the minute after the first (median) to the last minute (median), of the
    workers that lived through all of it (the soak kills the youngest worker, so one does). Without a survivor: the working-set figure."""
    if chunks:
        first, last = set(chunks[0].rss_mb), set(chunks[-1].rss_mb)
        survivors = [rss[pid]["growth_pct"] for pid in first & last if pid in rss]
        if survivors:
            return max(survivors)
    return working_set["growth_pct"]


def rss_growth(chunks: list[Chunk], settle_s: float, window_s: float = RSS_WINDOW_S) -> dict[str, dict[str, float]]:
    """Per worker: RSS over the minute that starts ``settle_s`` into its life (first seen) and over its last
    minute, each the median of that window's samples, and the largest single sample, in MB and %.

    Medians, not single samples: a worker's RSS swings with the swap cycle (two versions in memory while one
    replaces the other, trimmed a few seconds later): one worker with a promote every 15 s measured 255-275 MB
    over 6 minutes, so two single samples can differ by 8 % without any growth."""
    series: dict[str, list[tuple[float, float]]] = {}
    for c in chunks:
        for pid, mb in c.rss_mb.items():
            series.setdefault(pid, []).append((c.t_s, mb))
    out = {}
    for pid, samples in series.items():
        born, last_t = samples[0][0], samples[-1][0]
        settled = [(t, mb) for t, mb in samples if t - born >= settle_s]
        if len(settled) < 2 or last_t - born < settle_s + 2 * window_s:
            continue  # killed (or started) too late to judge
        base = statistics.median(mb for t, mb in settled if t - born < settle_s + window_s)
        end = statistics.median(mb for t, mb in settled if t > last_t - window_s)
        peak = max(mb for _, mb in settled)
        out[pid] = {"baseline_mb": base, "end_mb": end, "max_mb": peak,
                    "growth_pct": round(100.0 * (end - base) / base, 1),
                    "max_growth_pct": round(100.0 * (peak - base) / base, 1)}
    return out


def summarize(cfg: SoakConfig, peak: dict[str, Any], target: float, versions: tuple[int, int],
              chunks: list[Chunk]) -> dict[str, Any]:
    def failed(c: Chunk) -> int:
        return sum(c.errors.values())

    killed = [c for c in chunks if any(e.startswith("kill") for e in c.events)]
    rss = rss_growth(chunks, cfg.rss_settle_s)
    working_set = working_set_growth(chunks, cfg.rss_settle_s)
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
        "peak": {"throughput": round(peak["throughput"], 1), "p99_ms": peak["latency_ms"]["p99"],
                 "errors": peak["errors"]},
        "target_throughput": round(target, 1),
        "versions": list(versions),
        "requests_ok": sum(c.ok for c in chunks),
        "mean_throughput": round(sum(c.throughput for c in chunks) / max(1, len(chunks)), 1),
        "failed_total": sum(failed(c) for c in chunks),
        "failed_in_kill_chunks": sum(failed(c) for c in killed),
        "failed_elsewhere": sum(failed(c) for c in chunks if c not in killed),
        "kills": len(killed),
        "swaps": sum(1 for c in chunks for e in c.events if e.startswith("promote")),
        "rss": rss,
        "working_set": working_set,
        "max_rss_growth_pct": survivor_growth(chunks, rss, working_set),
        "max_rss_growth_pct_own_first_minute": max((r["growth_pct"] for r in rss.values()), default=None),
        "chunks": [asdict(c) for c in chunks],
    }


def render(result: dict[str, Any], every_s: float = 60.0) -> str:
    """Markdown: the pass figures, then one timeline row per minute (and every chunk with an event)."""
    s = result["settings"]
    lines = [
        f"Soak: {s['minutes']} min, {s['workers']} workers, wrk with {s['connections']} connections throttled to "
        f"{s['load_fraction']:.0%} of the measured peak ({result['peak']['throughput']} req/s -> target "
        f"{result['target_throughput']} req/s); a promote every {s['swap_every_s']:.0f} s (v{result['versions'][0]} "
        f"<-> v{result['versions'][1]}), one worker kill -9 every {s['kill_every_s']:.0f} s.", "",
        "| figure | value |", "|---|---:|",
        f"| requests answered 200 | {result['requests_ok']:,} |",
        f"| mean throughput | {result['mean_throughput']} req/s |",
        f"| promotes / kills | {result['swaps']} / {result['kills']} |",
        f"| failed requests in chunks with a kill | {result['failed_in_kill_chunks']} |",
        f"| failed requests elsewhere | {result['failed_elsewhere']} |",
        f"| worker RSS one minute in (largest) | {result['working_set']['baseline_mb']} MB |",
        f"| worker RSS at the end | {', '.join(f'{mb:.0f}' for mb in result['working_set']['end_mb'].values())} MB |",
        f"| RSS growth of the worker(s) alive from start to end (median of minute 2 -> median of the last minute) | {result['max_rss_growth_pct']} % |",
        f"| largest end RSS vs the workers' RSS one minute in | {result['working_set']['growth_pct']} % |",
        f"| largest growth of a worker from its own first minute | {result['max_rss_growth_pct_own_first_minute']} % |",
        "",
        "| t (s) | req/s | p99 ms | errors | events | /model versions | worker RSS MB |", "|---:|---:|---:|---|---|---|---|",
    ]
    next_row = 0.0
    for c in result["chunks"]:
        if c["t_s"] < next_row and not c["events"] and not c["errors"]:
            continue
        next_row = c["t_s"] + every_s if c["t_s"] >= next_row else next_row
        rss = ", ".join(f"{mb:.0f}" for mb in c["rss_mb"].values())
        lines.append(f"| {c['t_s']:.0f} | {c['throughput']:.0f} | {c['p99_ms']:.1f} | {c['errors'] or ''} | "
                     f"{'; '.join(c['events'])} | {c['versions']} | {rss} |")
    return "\n".join(lines) + "\n"

