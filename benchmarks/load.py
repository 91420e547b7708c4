"""Closed-loop load generator (perf_analyzer style): ``C`` concurrent clients, each sending its next request
as soon as the previous answer arrives, from one asyncio process.

Every run is bounded twice: by ``warmup_s + duration_s`` of wall time and by ``max_requests``; requests
still in flight at the end get ``timeout_s`` (at most) to finish and are not counted. Only requests that
*complete* inside the measurement window (after the warm-up) count, for throughput and latency alike.
Targets must be loopback addresses.

Request bodies are encoded once up front (multipart with a fixed boundary, raw, V2 JSON, or a gRPC
``ModelInferRequest``), so the client spends its CPU on sockets, not on formatting: on a 2-core machine the
load generator shares the CPU with the server it measures.

Also usable on its own against a running server::

    python -m benchmarks.load http://127.0.0.1:3000/predict --corpus jpeg-640x480 -c 1,8,32,64
    python -m benchmarks.load grpc://127.0.0.1:8001/fashion-mnist --corpus png-28-gray -c 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .bodies import HTTP_ENCODINGS
from .clients import GrpcClient, HttpClient, build_client

OK_STATUSES = frozenset({"200", "OK"})


# ---- the loop -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadSpec:
    concurrency: int
    duration_s: float
    warmup_s: float = 1.0
    max_requests: int = 200_000
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.duration_s <= 0 or self.warmup_s < 0 or self.max_requests < 1:
            raise ValueError(f"invalid load spec {self}")


# A probe is called at the start and at the end of the measurement window; the runner uses it for server
# CPU time and /metrics histograms. Its two results are diffed by the caller.
Probe = Callable[[], Awaitable[dict[str, Any]]]


@dataclass
class PointResult:
    concurrency: int
    window_s: float
    completed: int  # inside the window, any status
    ok: int
    throughput: float  # OK responses per second
    latency_ms: dict[str, float]  # of OK responses: mean p50 p90 p95 p99 max
    errors: dict[str, int]  # status -> count, inside the window
    sent: int  # including warm-up and the unfinished tail
    unfinished: int
    client_cpu_s: float
    probes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (what perf_analyzer reports), ``q`` in [0, 100]."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


PERCENTILES = (50, 90, 95, 99)
LATENCY_KEYS = ("mean", *(f"p{q}" for q in PERCENTILES), "max")  # every point's latency_ms, whatever the client


def latency_summary(sorted_ms: Sequence[float]) -> dict[str, float]:
    """mean, p50/p90/p95/p99 and max of sorted latencies in ms, rounded to µs; NaN for a point with none (a report
    shows "–", never a 0 that reads as a fast answer)."""
    lat = {
        "mean": float(sum(sorted_ms) / len(sorted_ms)) if sorted_ms else float("nan"),
        **{f"p{q}": percentile(sorted_ms, q) for q in PERCENTILES},
        "max": float(sorted_ms[-1]) if sorted_ms else float("nan"),
    }
    return {k: round(v, 3) for k, v in lat.items()}


def summarize(
    samples: Sequence[tuple[float, float, str]], window: tuple[float, float], concurrency: int
) -> dict[str, Any]:
    """``samples`` of (start, end, status); counts those that end inside ``window``."""
    t0, t1 = window
    inside = [(s, e, st) for s, e, st in samples if t0 <= e <= t1]
    ok_lat = sorted((e - s) * 1e3 for s, e, st in inside if st in OK_STATUSES)
    errors = Counter(st for _, _, st in inside if st not in OK_STATUSES)
    span = max(1e-9, t1 - t0)
    return {
        "concurrency": concurrency,
        "window_s": span,
        "completed": len(inside),
        "ok": len(ok_lat),
        "throughput": len(ok_lat) / span,
        "latency_ms": latency_summary(ok_lat),
        "errors": dict(sorted(errors.items())),
    }


async def run_closed_loop(
    client: HttpClient | GrpcClient, spec: LoadSpec, *, probe: Probe | None = None,
    sink: list[tuple[float, float, str]] | None = None,
) -> PointResult:
    """Drive ``client`` with ``spec.concurrency`` closed-loop workers; see the module docstring. Every
    request's (start, end, status), times relative to the start of the run, is appended to ``sink``."""
    loop = asyncio.get_running_loop()
    samples: list[tuple[float, float, str]] = []
    counter = 0
    start = loop.time()
    t_warm = start + spec.warmup_s
    t_end = t_warm + spec.duration_s
    cpu = {}

    async def worker() -> None:
        nonlocal counter
        while True:
            now = loop.time()
            if now >= t_end or counter >= spec.max_requests:
                return
            index = counter
            counter += 1
            try:
                status = await client.send(index)
            except Exception as exc:  # a client bug must not silently stop one of the C workers
                status = f"client-error:{type(exc).__name__}"
            samples.append((now, loop.time(), status))

    finished = asyncio.Event()  # all workers stopped (the request cap can end a run before t_end)
    window_end = [t_end]

    async def window_probe() -> dict[str, Any]:
        await asyncio.sleep(max(0.0, t_warm - loop.time()))
        cpu["start"] = time.process_time()
        before = await probe() if probe else {}
        try:
            await asyncio.wait_for(finished.wait(), timeout=max(0.0, t_end - loop.time()))
        except TimeoutError:
            pass
        window_end[0] = min(t_end, loop.time())
        cpu["end"] = time.process_time()
        after = await probe() if probe else {}
        return {"before": before, "after": after}

    tasks = [asyncio.create_task(worker()) for _ in range(spec.concurrency)]
    probe_task = asyncio.create_task(window_probe())
    # Workers stop issuing at t_end; give the requests in flight then at most timeout_s to finish.
    deadline = spec.warmup_s + spec.duration_s + spec.timeout_s + 1.0
    done, pending = await asyncio.wait(tasks, timeout=deadline)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    finished.set()
    probes = await probe_task
    if sink is not None:
        sink.extend((s0 - start, s1 - start, st) for s0, s1, st in samples)
    sent = counter
    stats = summarize(samples, (t_warm, max(t_warm, window_end[0])), spec.concurrency)
    return PointResult(
        **stats,
        sent=sent,
        unfinished=sent - len(samples),
        client_cpu_s=round(cpu.get("end", 0.0) - cpu.get("start", 0.0), 3),
        probes=probes,
    )


# ---- perf_analyzer-style table --------------------------------------------------------------------------
def format_table(points: Sequence[dict[str, Any]], title: str = "") -> str:
    """One line per concurrency: throughput, latency percentiles, errors, and the server-side split
    (queue wait vs ORT time per batch, mean batch size) when the server exposes it."""
    lines = [title] if title else []
    lines.append(
        f"{'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'ok':>7} "
        f"{'errors':<14} {'srv queue ms':>12} {'srv infer ms':>12} {'batch':>6}"
    )
    for p in points:
        lat = p["latency_ms"]
        errs = ",".join(f"{k}:{v}" for k, v in p["errors"].items()) or "0"
        srv = p.get("server") or {}
        lines.append(
            f"{p['concurrency']:>5} {p['throughput']:>9.1f} {lat['p50']:>8.2f} {lat['p90']:>8.2f} {lat['p95']:>8.2f} "
            f"{lat['p99']:>8.2f} {p['ok']:>7} {errs:<14} {_fmt(srv.get('queue_wait_ms')):>12} "
            f"{_fmt(srv.get('inference_ms')):>12} {_fmt(srv.get('batch_size'), 1):>6}"
        )
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


async def sweep(url: str, images: Sequence[bytes], content_type: str, concurrencies: Sequence[int], *,
                duration_s: float, warmup_s: float, timeout_s: float = 30.0, encoding: str = "multipart",
                max_requests: int = 200_000, probe: Probe | None = None) -> list[PointResult]:
    results = []
    for c in concurrencies:
        client = build_client(url, images, content_type, concurrency=c, timeout_s=timeout_s, encoding=encoding)
        async with client:
            spec = LoadSpec(c, duration_s, warmup_s, max_requests=max_requests, timeout_s=timeout_s)
            results.append(await run_closed_loop(client, spec, probe=probe))
    return results


def add_load_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="http://127.0.0.1:PORT/predict or grpc://127.0.0.1:PORT/MODEL (loopback only)")
    p.add_argument("--corpus", default="jpeg-640x480", help="corpus kind (jpeg-640x480 | png-28-gray)")
    p.add_argument("-c", "--concurrency", default="1,8,32,64", help="comma-separated (default 1,8,32,64)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per concurrency")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each window")
    p.add_argument("--max-requests", type=int, default=200_000, help="stop a point after this many requests")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request timeout, seconds")
    p.add_argument("--encoding", choices=sorted(HTTP_ENCODINGS), default="multipart", help="HTTP body format")
    p.add_argument("--metrics-url", default=None, help="Prometheus /metrics to diff per point (imgserve)")
    p.add_argument("--json", action="store_true", help="print results as JSON")


def load_main(args: argparse.Namespace) -> int:
    """``benchmarks load``: a sweep against an already running server, printed as a table."""
    from .corpus import load_corpus
    from .promstats import metrics_probe, server_side

    corpus = load_corpus(args.corpus)
    concurrencies = [int(c) for c in str(args.concurrency).split(",") if c]
    probe = metrics_probe(args.metrics_url) if args.metrics_url else None
    results = asyncio.run(
        sweep(args.url, corpus.images, corpus.content_type, concurrencies, duration_s=args.duration,
              warmup_s=args.warmup, timeout_s=args.timeout, encoding=args.encoding,
              max_requests=args.max_requests, probe=probe)
    )
    points = []
    for r in results:
        d = r.to_dict()
        d["server"] = server_side(d.pop("probes"))
        points.append(d)
    if args.json:
        print(json.dumps(points, indent=2))
    else:
        print(format_table(points, f"{args.url}  corpus={corpus.kind} ({len(corpus.images)} images)"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    add_load_args(parser)
    return load_main(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
