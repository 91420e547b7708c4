"""OIP gRPC load from ``h2load`` (C, Debian's ``nghttp2-client``), so that gRPC points measure the server too.

The asyncio gRPC client (benchmarks/clients.py) takes 6-19 % of a 2-core machine; h2load, an HTTP/2 load
generator, ~4 %. gRPC is HTTP/2: a ``POST /inference.GRPCInferenceService/ModelInfer`` with ``content-type:
application/grpc``, ``te: trailers`` and a body framed as one gRPC message (a 0 byte, the 4-byte big-endian
length, the serialised ``ModelInferRequest``). h2load sends one body file, so every request carries the same
image: the corpus's median-size one. It is a closed loop like ours (``-c`` connections, one stream each).

h2load sees HTTP statuses only; a gRPC error is an HTTP 200 whose ``grpc-status`` trailer is not 0. So the
suite uses it only for targets with imgserve's ``/metrics``, and counts the RPCs the server answered with any
status but OK (``imgserve_requests_total{protocol="grpc"}``, diffed over the window) as errors. RPCs that h2load
itself cancels when its time is up are answered 499 and are not counted.
"""

from __future__ import annotations

import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .clients import check_loopback, infer_request
from .load import LoadSpec, PointResult, Probe, latency_summary
from .wrk import run_client

H2LOAD_BINARY = "h2load"
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


def h2load_path() -> str | None:
    """The h2load binary, or None when it is not installed (gRPC points then use the Python client)."""
    return shutil.which(H2LOAD_BINARY)


def grpc_message(image: bytes, model: str) -> bytes:
    """The Python client's ``ModelInferRequest`` (benchmarks/clients.py), framed as a gRPC message."""
    data = infer_request(image, model).SerializeToString()
    return b"\x00" + struct.pack(">I", len(data)) + data


def grpc_errors(probes: dict[str, Any]) -> dict[str, int]:
    """RPCs answered with a status other than OK during the window, from the server's request counter
    (``statuses``: ``(protocol, status) -> count``, see benchmarks/promstats.py); 499 (cancelled by the client)
    is h2load's own doing when its time is up."""
    before = (probes.get("before") or {}).get("statuses") or {}
    after = (probes.get("after") or {}).get("statuses") or {}
    out = {}
    for (protocol, status), count in after.items():
        n = int(count - before.get((protocol, status), 0))
        if protocol == "grpc" and status not in ("200", "499") and n > 0:
            out[f"grpc-{status}"] = n
    return out


def parse_log(text: str) -> tuple[list[float], int]:
    """h2load's ``--log-file``: (latencies in ms of HTTP 200 answers, count of other answers)."""
    ok, other = [], 0
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) < 3:
            continue
        if cols[1] == "200":
            ok.append(int(cols[2]) / 1000.0)
        else:
            other += 1
    return ok, other


async def run_h2load(url: str, image: bytes, spec: LoadSpec, *, probe: Probe | None = None) -> PointResult:
    """One closed-loop point against ``grpc://host:port/MODEL``: h2load's warm-up, then ``spec.duration_s``
    measured between two probes (server CPU, /metrics)."""
    check_loopback(url)
    binary = h2load_path()
    if binary is None:
        raise RuntimeError("h2load is not installed (Debian: apt-get install nghttp2-client)")
    parts = urlsplit(url)
    model = parts.path.strip("/")
    with tempfile.TemporaryDirectory(prefix="imgserve-h2load-") as tmp:
        body, log = Path(tmp) / "request.bin", Path(tmp) / "requests.tsv"
        body.write_bytes(grpc_message(image, model))

        def argv(seconds: float, extra: list[str]) -> list[str]:
            return [binary, "-D", f"{max(1.0, seconds):g}", "-c", str(spec.concurrency), "-m", "1", "-t", "1",
                    "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers", *extra,
                    f"http://{parts.netloc}{INFER_PATH}"]

        grace = spec.timeout_s + 10.0
        if spec.warmup_s > 0:
            await run_client(argv(spec.warmup_s, []), spec.warmup_s + grace)
        before = await probe() if probe else {}
        out, cpu_s = await run_client(argv(spec.duration_s, [f"--log-file={log}"]), spec.duration_s + grace)
        after = await probe() if probe else {}
        latencies, other = parse_log(log.read_text() if log.exists() else "")
    finished = re.search(r"finished in ([\d.]+)(ms|s),", out)
    if finished is None:
        raise RuntimeError(f"h2load printed no result; its output was:\n{out[-2000:]}")
    probes = {"before": before, "after": after}
    errors = grpc_errors(probes)
    if other:
        errors["non-200"] = other
    ok = max(0, len(latencies) - sum(errors.values()))
    window_s = float(finished.group(1)) / (1000.0 if finished.group(2) == "ms" else 1.0)
    latency = latency_summary(sorted(latencies))
    return PointResult(
        concurrency=spec.concurrency, window_s=window_s, completed=len(latencies) + other, ok=ok,
        throughput=ok / window_s, latency_ms=latency, errors=errors, sent=len(latencies) + other, unfinished=0,
        client_cpu_s=round(cpu_s, 3), probes=probes,
    )
