"""Interleaved A/B of servers that are already running: ``python -m benchmarks.ab NAME=URL@PID …``.

Why: on a shared machine absolute req/s drift by 2x within minutes, so a comparison means something only
when its points alternate (A, B, A, B …) inside one run. Each point is one wrk run (benchmarks/wrk.py) with
the server's CPU seconds read from /proc for the process tree under ``PID`` before and after: CPU ms per
request is far less sensitive to other tenants than throughput. Prints one line per point and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from collections.abc import Sequence

from .bodies import HTTP_ENCODINGS
from .corpus import load_corpus
from .load import LoadSpec
from .promstats import process_tree_cpu
from .wrk import run_wrk


async def _point(url: str, pid: int, bodies: list, spec: LoadSpec) -> dict[str, float]:
    async def probe() -> dict[str, float]:
        return {"cpu_s": process_tree_cpu(lambda: [pid]) or 0.0}

    point = await run_wrk(url, bodies, spec, probe=probe)
    cpu = point.probes["after"]["cpu_s"] - point.probes["before"]["cpu_s"]
    errors = sum(point.errors.values())
    return {"rps": point.throughput, "cpu_ms": 1e3 * cpu / max(1, point.completed), "p99": point.latency_ms["p99"],
            "errors": errors, "client_cpu": point.client_cpu_s / point.window_s}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    p.add_argument("targets", nargs="+", help="NAME=URL@PID (PID: the server's root process)")
    p.add_argument("-c", "--concurrency", type=int, default=64)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--corpus", default="png-28-gray")
    p.add_argument("--encoding", default="multipart", choices=sorted(HTTP_ENCODINGS))
    args = p.parse_args(argv)
    corpus = load_corpus(args.corpus)
    bodies = [HTTP_ENCODINGS[args.encoding](img, corpus.content_type) for img in corpus.images]
    spec = LoadSpec(concurrency=args.concurrency, duration_s=args.duration, warmup_s=args.warmup)
    targets = []
    for t in args.targets:
        name, _, rest = t.partition("=")
        url, _, pid = rest.rpartition("@")
        targets.append((name, url, int(pid)))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in targets}
    for r in range(args.rounds):
        for name, url, pid in targets:
            res = asyncio.run(_point(url, pid, bodies, spec))
            results[name].append(res)
            print(f"round {r} {name:>12}: {res['rps']:8.0f} req/s  cpu {res['cpu_ms']:.3f} ms/req  "
                  f"p99 {res['p99']:.1f} ms  errors {res['errors']}  client {100 * res['client_cpu']:.0f} %", flush=True)
    base = statistics.median(x["rps"] for x in results[targets[0][0]])
    for name, rs in results.items():
        rps = statistics.median(x["rps"] for x in rs)
        cpu = statistics.median(x["cpu_ms"] for x in rs)
        print(f"median {name:>12}: {rps:8.0f} req/s ({rps / base:.2f}x {targets[0][0]})  cpu {cpu:.3f} ms/req")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
