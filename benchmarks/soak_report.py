"""The soak's figures and timeline (benchmarks/soak.py): what passes, what failed where, workers' memory."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .soak import Chunk, SoakConfig

def rss_growth(chunks: list[Chunk], settle_s: float) -> dict[str, dict[str, float]]:
    """Per worker: RSS ``settle_s`` into its life (first seen), at the end, and the largest, in MB and %."""
    series: dict[str, list[tuple[float, float]]] = {}
    for c in chunks:
        for pid, mb in c.rss_mb.items():
            series.setdefault(pid, []).append((c.t_s, mb))
    out = {}
    for pid, samples in series.items():
        born = samples[0][0]
        settled = [mb for t, mb in samples if t - born >= settle_s]
        if len(settled) < 2:
            continue  # killed (or started) too late to judge
        base = settled[0]
        out[pid] = {"baseline_mb": base, "end_mb": settled[-1], "max_mb": max(settled),
                    "growth_pct": round(100.0 * (settled[-1] - base) / base, 1),
                    "max_growth_pct": round(100.0 * (max(settled) - base) / base, 1)}
    return out


def summarize(cfg: SoakConfig, peak: dict[str, Any], target: float, versions: tuple[int, int],
              chunks: list[Chunk]) -> dict[str, Any]:
    def failed(c: Chunk) -> int:
        return sum(c.errors.values())

    killed = [c for c in chunks if any(e.startswith("kill") for e in c.events)]
    rss = rss_growth(chunks, cfg.rss_settle_s)
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
        "max_rss_growth_pct": max((r["growth_pct"] for r in rss.values()), default=None),
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
        f"| largest worker RSS growth after its first minute | {result['max_rss_growth_pct']} % |", "",
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

