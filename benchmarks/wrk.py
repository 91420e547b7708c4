"""HTTP load from ``wrk`` (C, Debian's package), so that the server is measured and not the client.

On a 2-core machine the asyncio load generator (benchmarks/load.py) spends ~0.3-0.5 ms of CPU per request and
takes a large share of the cores from the server it measures, flattening every server towards the same figure.
wrk costs a few µs per request. The suite uses it for HTTP points when it is installed (``--client auto``) and
keeps the Python generator for what wrk cannot do (gRPC) and for per-status error breakdowns.

wrk is a closed loop like ours (``-c`` connections, each sends its next request when the answer arrives). A Lua
script rotates through the corpus's pre-encoded request bodies and prints one JSON line of results at the end.
wrk has no warm-up: a separate short run warms the server first; the measured run's window is its duration
(wrk takes whole seconds: durations are rounded, at least 1 s, and the real window is what wrk reports).
wrk counts non-2xx/3xx answers without naming them: they are reported as errors ``"non-2xx"``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .bodies import HttpRequest
from .clients import check_loopback
from .load import LATENCY_KEYS, LoadSpec, PointResult, Probe

WRK_BINARY = "wrk"
RESULT_MARK = "IMGSERVE_WRK_RESULT "

# Bodies are read from files named on wrk's command line (after "--"): Lua strings hold any bytes.
_SCRIPT = r"""
local requests, n, i = {}, 0, 0
init = function(args)
  local path = args[1]
  for k = 2, #args, 2 do
    local fh = assert(io.open(args[k], "rb"))
    local body = fh:read("*all")
    fh:close()
    local headers = {["Content-Type"] = args[k + 1]}
    n = n + 1
    requests[n] = wrk.format("POST", path, headers, body)
  end
end
request = function()
  i = i % n + 1
  return requests[i]
end
local pause = tonumber(os.getenv("IMGSERVE_WRK_DELAY_MS") or "0")
if pause > 0 then delay = function() return pause end end
done = function(summary, latency, reqs)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 90, 95, 99}) do p["p" .. q] = latency:percentile(q) / 1000.0 end
  io.write(string.format(
    '%s{"duration_us": %d, "requests": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "mean_ms": %.4f, "max_ms": %.4f, "p50_ms": %.4f, "p90_ms": %.4f, "p95_ms": %.4f, ' ..
    '"p99_ms": %.4f}\n', "%MARK%", summary.duration, summary.requests, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean / 1000.0, latency.max / 1000.0, p.p50, p.p90, p.p95, p.p99))
end
""".replace("%MARK%", RESULT_MARK)


def wrk_path() -> str | None:
    """The wrk binary, or None when it is not installed (the suite then falls back to the Python client)."""
    return shutil.which(WRK_BINARY)


def _content_type(req: HttpRequest) -> str:
    for name, value in req.headers.items():
        if name.lower() == "content-type":
            return value
    return "application/octet-stream"


def parse_result(stdout: str) -> dict[str, Any]:
    """The JSON line the script's ``done`` printed; a clear error when wrk died before it."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise RuntimeError(f"wrk printed no result line; its output was:\n{stdout[-2000:]}")


def to_point(raw: dict[str, Any], concurrency: int, client_cpu_s: float, probes: dict[str, Any]) -> PointResult:
    """wrk's counters in the shape of the Python generator's :class:`PointResult`."""
    window_s = max(1e-9, raw["duration_us"] / 1e6)
    non_ok = raw["status"]
    ok = max(0, raw["requests"] - non_ok)
    errors = {k: raw[k] for k in ("connect", "read", "write", "timeout") if raw[k]}
    if non_ok:
        errors["non-2xx"] = non_ok
    # wrk reports zeros when nothing was answered; NaN ("–" in the report), like the other load generators
    latency = {k: round(raw[f"{k}_ms"], 3) if raw["requests"] else float("nan") for k in LATENCY_KEYS}
    return PointResult(
        concurrency=concurrency, window_s=window_s, completed=raw["requests"], ok=ok, throughput=ok / window_s,
        latency_ms=latency, errors=errors, sent=raw["requests"], unfinished=0,
        client_cpu_s=round(client_cpu_s, 3), probes=probes,
    )


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_client(argv: list[str], timeout_s: float, delay_ms: float = 0.0) -> tuple[str, float]:
    """Run a C load generator (wrk, h2load); its output and the CPU seconds it used (it is this process's only
    child meanwhile)."""
    before = _children_cpu_s()
    env = {**os.environ, "IMGSERVE_WRK_DELAY_MS": f"{max(0.0, delay_ms):.3f}"}
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                env=env)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return out.decode(errors="replace"), _children_cpu_s() - before


async def run_wrk(url: str, requests: Sequence[HttpRequest], spec: LoadSpec, *, probe: Probe | None = None,
                  threads: int = 1, delay_ms: float = 0.0) -> PointResult:
    """One closed-loop point: a warm-up run of ``spec.warmup_s``, then the measured run of ``spec.duration_s``
    between two probes (server CPU, /metrics). One wrk thread drives all connections by default: the
    cheapest client, and one thread's epoll loop handles hundreds of connections at these rates.
    ``delay_ms``: each connection pauses this long before its next request (a throttled load, for soaks)."""
    check_loopback(url)
    binary = wrk_path()
    if binary is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk); use --client python")
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conns = spec.concurrency
    with tempfile.TemporaryDirectory(prefix="imgserve-wrk-") as tmp:
        script, args = Path(tmp) / "bench.lua", [path]
        script.write_text(_SCRIPT)
        for n, req in enumerate(requests):
            body = Path(tmp) / f"body{n}"
            body.write_bytes(req.body)
            args += [str(body), _content_type(req)]

        def argv(seconds: float) -> list[str]:
            timeout = max(1, int(spec.timeout_s))
            # wrk takes whole seconds only: the window it reports (summary.duration) is the one used
            return [binary, f"-t{min(threads, conns)}", f"-c{conns}", f"-d{max(1, round(seconds))}s",
                    f"--timeout={timeout}s", "-s", str(script), base, "--", *args]

        grace = spec.timeout_s + 10.0
        if spec.warmup_s > 0:
            await run_client(argv(spec.warmup_s), spec.warmup_s + grace)
        before = await probe() if probe else {}
        out, cpu_s = await run_client(argv(spec.duration_s), spec.duration_s + grace, delay_ms)
        after = await probe() if probe else {}
    return to_point(parse_result(out), conns, cpu_s, {"before": before, "after": after})
