"""Server-side numbers for a load point: Prometheus histograms diffed over the window (imgserve's
queue wait, ORT time and batch size per batch) and the server's CPU seconds (its whole process tree)."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

# imgserve's metric names (serving/metrics.py): each is a histogram observed once per ORT batch.
HISTOGRAMS = {
    "queue_wait": "imgserve_queue_wait_seconds",  # longest queue wait of the requests in a batch
    "inference": "imgserve_inference_seconds",  # one ORT run
    "batch_size": "imgserve_batch_size",  # rows per ORT run
}


def parse_histogram_sums(text: str, names: Iterable[str] = HISTOGRAMS.values()) -> dict[str, tuple[float, float]]:
    """``name -> (sum, count)`` over every label set, from Prometheus text exposition."""
    wanted = set(names)
    out: dict[str, list[float]] = {n: [0.0, 0.0] for n in wanted}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        metric, _, rest = line.partition(" ")
        base = metric.split("{", 1)[0]
        for suffix, idx in (("_sum", 0), ("_count", 1)):
            if base.endswith(suffix) and base[: -len(suffix)] in wanted:
                try:
                    out[base[: -len(suffix)]][idx] += float(rest.split()[0])
                except (ValueError, IndexError):
                    pass
    return {n: (v[0], v[1]) for n, v in out.items() if v[1] > 0 or v[0] > 0}


REQUESTS = "imgserve_requests_total"  # counter: endpoint, protocol, status (serving/metrics.py)


def parse_status_counts(text: str, name: str = REQUESTS) -> dict[tuple[str, str], float]:
    """``(protocol, status) -> count`` of ``name`` over every endpoint, from Prometheus text exposition."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        labels, _, rest = line[len(name) + 1:].partition("} ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        key = (found.get("protocol", ""), found.get("status", ""))
        try:
            out[key] = out.get(key, 0.0) + float(rest.split()[0])
        except (ValueError, IndexError):
            pass
    return out


def server_side(probes: dict[str, Any] | None) -> dict[str, Any]:
    """Diff the ``before``/``after`` probe results into per-window means (ms for times)."""
    if not probes:
        return {}
    before, after = probes.get("before") or {}, probes.get("after") or {}
    out: dict[str, Any] = {}
    hb, ha = before.get("histograms") or {}, after.get("histograms") or {}
    for key, name in HISTOGRAMS.items():
        if name in ha:
            s0, c0 = hb.get(name, (0.0, 0.0))
            s1, c1 = ha[name]
            if c1 - c0 > 0:
                mean = (s1 - s0) / (c1 - c0)
                out[f"{key}_ms" if key != "batch_size" else key] = round(mean * 1e3 if key != "batch_size" else mean, 3)
                if key == "inference":
                    out["batches"] = int(c1 - c0)
    if "cpu_s" in before and "cpu_s" in after:
        out["cpu_s"] = round(after["cpu_s"] - before["cpu_s"], 3)
    return out


def process_tree_cpu(pids: Callable[[], list[int]]) -> float | None:
    """User+system CPU seconds of the processes ``pids()`` returns and all their descendants (alive ones:
    the runner keeps servers up for the whole sweep, so nothing of interest exits in between)."""
    try:
        import psutil
    except ImportError:  # the bench extra brings it; without it, no CPU numbers
        return None

    total, seen = 0.0, set()
    for pid in pids():
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            if proc.pid in seen:
                continue
            seen.add(proc.pid)
            try:
                t = proc.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    return total


def metrics_probe(url: str | None, pids: Callable[[], list[int]] | None = None, timeout_s: float = 5.0):
    """A probe for :func:`benchmarks.load.run_closed_loop`: scrape ``url`` and/or sum the CPU of ``pids``."""

    async def probe() -> dict[str, Any]:
        result: dict[str, Any] = {}
        if pids is not None:
            cpu = await asyncio.to_thread(process_tree_cpu, pids)
            if cpu is not None:
                result["cpu_s"] = cpu
        if url:
            try:
                text = await asyncio.to_thread(_fetch_text, url, timeout_s)
                result["histograms"] = parse_histogram_sums(text)
                result["statuses"] = parse_status_counts(text)
            except Exception as exc:  # metrics are a bonus; a failed scrape must not fail the point
                result["error"] = f"{type(exc).__name__}: {exc}"
        return result

    return probe


def _fetch_text(url: str, timeout_s: float) -> str:
    import urllib.request

    from .clients import check_loopback

    check_loopback(url)
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - loopback checked above
        return resp.read().decode("utf-8", "replace")


def is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)
