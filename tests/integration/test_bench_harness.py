"""The benchmark harness's own correctness (not speed): the --quick machinery runs for a few seconds
against a real stand-in server (the FastAPI peer, on a tiny model) and produces complete results, a
report and plots; the load generator's HTTP and gRPC modes count real answers; servers leave nothing
behind."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from benchmarks.clients import build_client
from benchmarks.corpus import load_corpus
from benchmarks.load import LoadSpec, run_closed_loop
from benchmarks.procs import ServerSpec, _session_members, free_port, running
from benchmarks.runconfig import RunConfig
from benchmarks.runner import run_suite
from benchmarks.targets import REPO_ROOT
from benchmarks.workloads import parse_workload
from inference.registry import Registry
from tests.fixtures import register_tiny

pytest.importorskip("fastapi")
pytest.importorskip("aiohttp")


@pytest.fixture()
def tiny_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGSERVE_BENCH_CACHE", str(tmp_path / "cache"))  # corpora go to tmp, not the repo
    root = tmp_path / "models"
    register_tiny(Registry(root), "tiny")
    return root


def test_quick_suite_produces_results_report_and_plots(tiny_registry: Path, tmp_path: Path) -> None:
    workload = dataclasses.replace(parse_workload(f"tiny={tiny_registry}:tiny:png-28-gray"), corpus_count=32)
    out = tmp_path / "out"
    cfg = RunConfig.preset(
        True, workloads=[workload], targets=["fastapi"], out=out, concurrency=[1, 4], duration_s=0.8,
        warmup_s=0.3, inprocess_s=0.2, budget_s=120, raw=True, interleave=False,  # the --sequential order
    )
    run_suite(cfg)

    results = json.loads((out / "results.json").read_text())
    assert {"schema", "meta", "settings", "workloads"} <= results.keys()
    assert results["settings"]["concurrency"] == [1, 4] and results["settings"]["quick"] is True
    wl = results["workloads"]["tiny"]
    assert wl["status"] == "ok" and wl["corpus"]["count"] == 32
    limit = wl["in_process"]["int8"]
    assert limit["limit"] > 0 and limit["best"] in limit["images_per_s"]
    assert {"ort_alone_b1", "ort_alone_b32", "pipelines_b1", "loop_batch32"} <= limit["images_per_s"].keys()

    target = wl["targets"]["fastapi"]
    assert target["status"] == "ok", target
    assert target["label_matches_in_process"] is True  # same model + same preprocessing => same answer
    assert target["knobs"]["intra_op_threads"] == 1
    points = {p["concurrency"]: p for p in target["points"]}
    assert set(points) == {1, 4}
    for p in points.values():
        assert p["throughput"] > 0 and p["ok"] > 0
        assert p["errors"] == {}
        assert 0 < p["latency_ms"]["p50"] <= p["latency_ms"]["p95"] <= p["latency_ms"]["p99"]
        assert p["server"]["cpu_s"] > 0
    raw = target["runs"]["4"][0]
    assert raw["sent"] >= raw["ok"] and raw["window_s"] == pytest.approx(0.8, rel=0.1)

    report = (out / "report.md").read_text()
    assert "## Workload `tiny`" in report and "| fastapi | 4 |" in report and "In-process limit" in report
    assert "one server at a time" in report
    assert "imgserve" in report  # not run here: listed with its reason, never silently dropped
    if importlib.util.find_spec("matplotlib"):
        assert (out / "tiny.png").stat().st_size > 1000
    assert (out / "logs" / "tiny-fastapi.log").is_file()
    import gzip

    with gzip.open(out / "raw" / "tiny-fastapi-c4-r0.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    assert lines[0] == "start_s,latency_ms,status,warmup" and len(lines) - 1 == raw["sent"] - raw["unfinished"]


def test_interleaved_suite_alternates_servers_and_remeasures_the_limit(tiny_registry: Path, tmp_path: Path) -> None:
    """The default order: all servers up together, their points in turn within each round, the in-process
    limit measured before each round, the paused servers' CPU recorded during the others' points."""
    pytest.importorskip("bentoml")
    workload = dataclasses.replace(parse_workload(f"tiny={tiny_registry}:tiny:png-28-gray"), corpus_count=16)
    out = tmp_path / "out"
    cfg = RunConfig.preset(
        True, workloads=[workload], targets=["fastapi", "imgserve", "imgserve-nobatch"], out=out, concurrency=[2], repeats=2,
        duration_s=0.6, warmup_s=0.2, inprocess_s=0.2, budget_s=300, plots=False,
    )
    assert cfg.interleave
    run_suite(cfg)

    wl = json.loads((out / "results.json").read_text())["workloads"]["tiny"]
    runs = {name: wl["targets"][name]["runs"]["2"] for name in ("fastapi", "imgserve", "imgserve-nobatch")}
    assert all(wl["targets"][n]["status"] == "ok" and len(runs[n]) == 2 for n in runs), wl["targets"]
    order = sorted((r["seq"], name, r["repeat"]) for name, rs in runs.items() for r in rs)
    assert [(name, rep) for _, name, rep in order] == [(n, rep) for rep in (0, 1) for n in runs]
    for r in runs["imgserve"] + runs["imgserve-nobatch"]:
        # the first one's /metrics stays whole when the second starts (`bentoml serve` empties the Prometheus
        # directory of its BENTOML_HOME at start: each gets its own)
        assert r["server"]["batches"] > 0 and r["server"]["inference_ms"] > 0
    for name, rs in runs.items():
        for r in rs:
            assert r["ok"] > 0 and r["errors"] == {}
            assert 0.0 <= r["background_cpu_pct"] < 5.0, (name, r["background_cpu_pct"])  # the other one is paused
            assert 0.0 <= r["settle_s"] <= 15.5
        assert wl["targets"][name]["idle_cores"] >= 0.0
    limit = wl["in_process"]["int8"]
    assert len(limit["limit_rounds"]) == 2 and limit["limit"] > 0
    report = (out / "report.md").read_text()
    assert "points alternated" in report and "The limit in each round" in report and "paused meanwhile" in report


def test_load_generator_http_and_grpc_modes(tiny_registry: Path) -> None:
    pytest.importorskip("tritonclient.grpc")
    corpus = load_corpus("png-28-gray", 16)
    http, grpc_port = free_port(), free_port()
    spec = ServerSpec(
        "stand-in",
        [sys.executable, "-m", "benchmarks.peers.fastapi_ort", "--models-dir", str(tiny_registry),
         "--model", "tiny", "--port", str(http), "--grpc-port", str(grpc_port), "--workers", "2"],
        ready_url=f"http://127.0.0.1:{http}/readyz", env={"PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT,
        ready_timeout_s=60,
    )
    urls = [(f"http://127.0.0.1:{http}/predict", "multipart"), (f"http://127.0.0.1:{http}/predict", "raw"),
            (f"grpc://127.0.0.1:{grpc_port}/tiny", "multipart")]
    with running(spec, Path(str(tiny_registry)) / "stand-in.log") as server:
        sid = server.proc.pid
        for url, encoding in urls:
            async def go(url: str = url, encoding: str = encoding) -> dict:
                client = build_client(url, corpus.images, corpus.content_type, concurrency=3, timeout_s=10,
                                      encoding=encoding)
                async with client:
                    return (await run_closed_loop(client, LoadSpec(3, 0.6, 0.2, max_requests=5000))).to_dict()

            point = asyncio.run(go())
            assert point["ok"] > 0 and point["errors"] == {}, (url, encoding, point)
            assert point["sent"] <= 5000
        # a bad request is counted by status, not raised
        bad = build_client(f"http://127.0.0.1:{http}/predict", [b"not an image"], "image/png", concurrency=1,
                           timeout_s=5)

        async def bad_run() -> dict:
            async with bad:
                return (await run_closed_loop(bad, LoadSpec(1, 30.0, 0.0, max_requests=3))).to_dict()  # the cap ends it

        assert asyncio.run(bad_run())["errors"] == {"400": 3}
    assert server.proc.poll() is not None
    assert _session_members(sid) == []  # nothing of the server's session is left


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        build_client("http://example.com/predict", [b"x"], "image/png", concurrency=1, timeout_s=1)
    with pytest.raises(ValueError, match="loopback"):
        build_client("grpc://10.0.0.1:8001/m", [b"x"], "image/png", concurrency=1, timeout_s=1)


def test_wrk_client_counts_real_answers_and_its_own_cpu(tiny_registry: Path) -> None:
    """The C load generator the suite uses for HTTP points: real answers counted, non-2xx counted as errors,
    its own CPU measured (the figure the report gives as the client's share of the machine)."""
    from benchmarks.bodies import HTTP_ENCODINGS
    from benchmarks.wrk import run_wrk, wrk_path

    if wrk_path() is None:
        pytest.skip("wrk is not installed (make test installs Debian's wrk)")
    corpus = load_corpus("png-28-gray", 16)
    http = free_port()
    spec = ServerSpec(
        "stand-in",
        [sys.executable, "-m", "benchmarks.peers.fastapi_ort", "--models-dir", str(tiny_registry),
         "--model", "tiny", "--port", str(http), "--workers", "1"],
        ready_url=f"http://127.0.0.1:{http}/readyz", env={"PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT,
        ready_timeout_s=60,
    )
    url = f"http://127.0.0.1:{http}/predict"
    good = [HTTP_ENCODINGS["multipart"](d, corpus.content_type) for d in corpus.images]
    with running(spec, Path(str(tiny_registry)) / "stand-in.log"):
        point = asyncio.run(run_wrk(url, good, LoadSpec(4, 1.0, 0.3))).to_dict()
        assert point["ok"] > 20 and point["errors"] == {}, point
        assert point["window_s"] == pytest.approx(1.0, rel=0.2)
        assert 0 < point["latency_ms"]["p50"] <= point["latency_ms"]["p99"] <= point["latency_ms"]["max"]
        assert 0 < point["client_cpu_s"] < 1.0  # a C client: far below one core over a 1 s window
        bad = [HTTP_ENCODINGS["raw"](b"not an image", "image/png")]
        bad_point = asyncio.run(run_wrk(url, bad, LoadSpec(2, 0.5, 0.0))).to_dict()
        assert bad_point["ok"] == 0 and bad_point["errors"]["non-2xx"] == bad_point["completed"] > 0
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(run_wrk("http://example.com/predict", good, LoadSpec(1, 0.1, 0.0)))


def test_h2load_drives_oip_grpc_and_counts_failed_rpcs_from_the_servers_metrics(tiny_registry: Path) -> None:
    """The C load generator for gRPC points (benchmarks/h2load.py): real ModelInfer answers counted, latencies
    from its per-request log, its own CPU measured; an RPC that fails (an HTTP 200 with a non-OK grpc-status,
    invisible to h2load) is counted from the server's request counter."""
    pytest.importorskip("tritonclient.grpc")
    from prometheus_client import generate_latest

    from benchmarks.h2load import h2load_path, run_h2load
    from benchmarks.promstats import parse_status_counts
    from serving.metrics import ServingMetrics
    from serving.oip_grpc import start_grpc_server
    from serving.settings import ServeSettings
    from tests.integration.oip_harness import OipTestServer

    if h2load_path() is None:
        pytest.skip("h2load is not installed (make test installs Debian's nghttp2-client)")
    corpus = load_corpus("png-28-gray", 16)
    served = OipTestServer(ServeSettings(models_dir=tiny_registry, model="tiny", poll_interval_s=0)).start()
    try:
        grpc = served.call(start_grpc_server(served.runtime, "127.0.0.1", 0, on_rpc=ServingMetrics.get().observe_rpc))

        async def probe() -> dict:
            return {"statuses": parse_status_counts(generate_latest().decode())}

        point = asyncio.run(run_h2load(f"grpc://127.0.0.1:{grpc.port}/tiny", corpus.median_image(),
                                       LoadSpec(4, 1.0, 0.3), probe=probe)).to_dict()
        assert point["ok"] > 20 and point["errors"] == {}, point
        assert point["window_s"] == pytest.approx(1.0, rel=0.2)
        assert 0 < point["latency_ms"]["p50"] <= point["latency_ms"]["p99"] <= point["latency_ms"]["max"]
        assert 0 < point["client_cpu_s"] < 1.0
        missing = asyncio.run(run_h2load(f"grpc://127.0.0.1:{grpc.port}/no-such-model", corpus.median_image(),
                                         LoadSpec(2, 1.0, 0.0), probe=probe)).to_dict()
        assert missing["ok"] == 0 and missing["errors"]["grpc-404"] >= missing["completed"] > 0, missing
        served.call(grpc.stop(0))
    finally:
        served.stop()
