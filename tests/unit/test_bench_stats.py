"""Unit tests of the benchmark harness's pure parts: statistics, request encodings, metrics diffs,
target/workload selection, corpus determinism. No server, no TensorFlow."""

from __future__ import annotations

import email.parser
import math
from pathlib import Path

import pytest

from benchmarks.bodies import multipart_body, v2_json_body
from benchmarks.clients import check_loopback
from benchmarks.corpus import load_corpus
from benchmarks.load import latency_summary, percentile, summarize
from benchmarks.points import aggregate
from benchmarks.promstats import parse_histogram_sums, server_side
from benchmarks.targets import QUICK_TARGETS, TARGETS, select_targets
from benchmarks.workloads import PRESETS, parse_workload


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 99) == 7.0


def test_summarize_counts_only_completions_inside_the_window() -> None:
    samples = [
        (0.0, 0.5, "200"),  # warm-up: ends before the window
        (0.9, 1.1, "200"),
        (1.2, 1.3, "503"),
        (1.5, 1.6, "OK"),
        (2.9, 3.2, "200"),  # ends after the window
    ]
    s = summarize(samples, (1.0, 3.0), concurrency=2)
    assert s["completed"] == 3 and s["ok"] == 2 and s["errors"] == {"503": 1}
    assert s["throughput"] == pytest.approx(1.0)
    assert s["latency_ms"]["p50"] == pytest.approx(100.0) and s["latency_ms"]["max"] == pytest.approx(200.0)


def test_latency_summary_is_nan_without_samples() -> None:
    """One summary for every load generator (Python client, wrk, h2load): a point with no answers reads as
    missing ("–" in the report), not as 0 ms; h2load's copy used to say 0.0."""
    empty = latency_summary([])
    assert set(empty) == {"mean", "p50", "p90", "p95", "p99", "max"}
    assert all(math.isnan(v) for v in empty.values())
    some = latency_summary([1.0, 2.0, 3.0, 10.0004])
    assert some == {"mean": 4.0, "p50": 2.0, "p90": 10.0, "p95": 10.0, "p99": 10.0, "max": 10.0}


def test_wrk_point_without_answers_has_no_latency() -> None:
    from benchmarks.wrk import to_point

    raw = {"duration_us": 1_000_000, "requests": 0, "status": 0, "connect": 0, "read": 0, "write": 0, "timeout": 3,
           **{f"{k}_ms": 0.0 for k in ("mean", "p50", "p90", "p95", "p99", "max")}}
    point = to_point(raw, 4, 0.01, {}).to_dict()
    assert point["ok"] == 0 and point["errors"] == {"timeout": 3}
    assert all(math.isnan(v) for v in point["latency_ms"].values())
    answered = to_point({**raw, "requests": 5, "p50_ms": 1.23456}, 4, 0.01, {}).to_dict()
    assert answered["latency_ms"]["p50"] == 1.235 and answered["ok"] == 5


def test_multipart_body_is_a_valid_form() -> None:
    req = multipart_body("image", b"\x89PNG-bytes", "image/png")
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + req.headers["Content-Type"].encode() + b"\r\n\r\n" + req.body
    )
    (part,) = message.get_payload()
    assert part.get_param("name", header="content-disposition") == "image"
    assert part.get_payload(decode=True) == b"\x89PNG-bytes"
    assert b'"content_type": "base64"' in v2_json_body(b"abc").body


def test_loopback_check() -> None:
    for ok in ("http://127.0.0.1:3000/predict", "http://localhost:1/", "grpc://[::1]:8001/m", "http://127.0.0.2/"):
        check_loopback(ok)
    for bad in ("http://example.com/", "http://10.1.2.3/", "http://0.0.0.0/"):
        with pytest.raises(ValueError):
            check_loopback(bad)


PROM_BEFORE = """# HELP imgserve_inference_seconds seconds per ONNX Runtime run
imgserve_inference_seconds_bucket{le="0.001"} 5.0
imgserve_inference_seconds_sum 0.010
imgserve_inference_seconds_count 10.0
imgserve_batch_size_sum 20.0
imgserve_batch_size_count 10.0
imgserve_queue_wait_seconds_sum{worker="1"} 0.001
imgserve_queue_wait_seconds_count{worker="1"} 10.0
"""
PROM_AFTER = PROM_BEFORE.replace("_sum 0.010", "_sum 0.110").replace("inference_seconds_count 10.0",
    "inference_seconds_count 30.0").replace("batch_size_sum 20.0", "batch_size_sum 100.0").replace(
    "batch_size_count 10.0", "batch_size_count 30.0")


def test_server_side_diffs_histograms_and_cpu() -> None:
    before = {"histograms": parse_histogram_sums(PROM_BEFORE), "cpu_s": 1.0}
    after = {"histograms": parse_histogram_sums(PROM_AFTER), "cpu_s": 3.5}
    srv = server_side({"before": before, "after": after})
    assert srv["inference_ms"] == pytest.approx(5.0) and srv["batches"] == 20
    assert srv["batch_size"] == pytest.approx(4.0) and srv["cpu_s"] == pytest.approx(2.5)
    assert "queue_wait_ms" not in srv  # no new observations in the window
    assert server_side({}) == {}


def test_aggregate_takes_medians_and_spread() -> None:
    def rep(thr: float, p99: float, errors: dict[str, int] | None = None) -> dict:
        return {"throughput": thr, "ok": int(thr), "errors": errors or {}, "server": {"cpu_s": thr / 100},
                "latency_ms": {"mean": 1.0, "p50": 1.0, "p90": 2.0, "p95": 3.0, "p99": p99, "max": 9.0}}

    agg = aggregate([rep(100, 5.0), rep(120, 7.0), rep(90, 6.0, {"503": 2})])
    assert agg["throughput"] == 100 and agg["throughput_min"] == 90 and agg["throughput_max"] == 120
    assert agg["spread_pct"] == pytest.approx(30.0) and agg["latency_ms"]["p99"] == 6.0
    assert agg["errors"] == {"503": 2} and agg["repeats"] == 3 and agg["server"]["cpu_s"] == 1.0


def test_target_and_workload_selection(tmp_path: Path) -> None:
    assert select_targets(None, quick=True) == list(QUICK_TARGETS)
    assert select_targets(None, quick=False) == list(TARGETS)
    assert select_targets("mlserver,imgserve", quick=False) == ["mlserver-grpc", "mlserver-rest", "imgserve"]
    with pytest.raises(ValueError, match="unknown target"):
        select_targets("triton", quick=False)
    w = parse_workload(f"mine={tmp_path}:tiny:jpeg-640x480")
    assert (w.name, w.model, w.corpus, w.models_dir) == ("mine", "tiny", "jpeg-640x480", tmp_path)
    assert parse_workload("fashion-mnist") == PRESETS["fashion-mnist"]
    with pytest.raises(ValueError):
        parse_workload("mine=only-one-part")


def test_corpora_are_deterministic_and_cached(tmp_path: Path) -> None:
    a = load_corpus("jpeg-640x480", 2, seed=3, cache_dir=tmp_path)
    b = load_corpus("jpeg-640x480", 2, seed=3, cache_dir=tmp_path)  # from the cache
    c = load_corpus("jpeg-640x480", 2, seed=3, cache_dir=tmp_path / "fresh")  # generated again
    assert a.images == b.images == c.images and a.images[0][:2] == b"\xff\xd8"
    assert a.describe()["sha256"] == c.describe()["sha256"]
    import io

    from PIL import Image

    w, h = Image.open(io.BytesIO(a.images[0])).size
    assert 440 <= min(w, h) and max(w, h) <= 680
    png = load_corpus("png-28-gray", 4, cache_dir=tmp_path)
    assert Image.open(io.BytesIO(png.images[0])).size == (28, 28)


def test_overhead_beyond_decode_and_inference() -> None:
    """Issue 13's per-request overhead: server CPU per request minus the in-process CPU per image."""
    from benchmarks.report import overhead_ms

    ip = {"int8": {"limit": 400.0, "cpus": 2}, "fp32": {"limit": 200.0, "cpus": 2}}
    assert overhead_ms({"variant": "int8"}, {"server_cpu_ms_per_request": 5.75}, ip) == pytest.approx(0.75)
    assert overhead_ms({"variant": "keras"}, {"server_cpu_ms_per_request": 12.0}, ip) == pytest.approx(2.0)
    assert overhead_ms({"variant": "int8"}, {}, ip) is None and overhead_ms({"variant": "int8"}, {"server_cpu_ms_per_request": 1}, {}) is None


def test_in_process_rounds_merge_to_medians_and_keep_each_limit() -> None:
    """The suite measures the limit before every round; the report uses the medians and shows the drift."""
    from benchmarks.inprocess import merge_rounds

    def rnd(loop: float, pipe: float, ort: float) -> dict:
        ips = {"loop_batch32": loop, "pipelines_b1": pipe, "ort_alone_b1": ort}
        best = max(("loop_batch32", "pipelines_b1"), key=ips.__getitem__)
        return {"images_per_s": ips, "limit": ips[best], "best": best, "cpus": 2, "model_file": "m.onnx"}

    merged = merge_rounds([rnd(100, 90, 500), rnd(80, 95, 400), rnd(120, 70, 450)])
    assert merged["images_per_s"] == {"loop_batch32": 100, "pipelines_b1": 90, "ort_alone_b1": 450}
    assert (merged["limit"], merged["best"]) == (100, "loop_batch32")  # ORT alone (no decode) is never the limit
    assert merged["limit_rounds"] == [100, 95, 120] and merged["cpus"] == 2


def test_paired_ratio_pairs_points_of_the_same_round() -> None:
    from benchmarks.report import paired_ratio

    ours = [{"repeat": 0, "throughput": 110.0}, {"repeat": 1, "throughput": 60.0}, {"repeat": 2, "throughput": 90.0}]
    ref = [{"repeat": 0, "throughput": 100.0}, {"repeat": 1, "throughput": 50.0}, {"repeat": 2, "throughput": 100.0}]
    # per round 1.1, 1.2, 0.9 -> 1.1; the ratio of the medians would say 90 / 100 = 0.9
    assert paired_ratio(ours, ref) == pytest.approx(1.1)
    assert paired_ratio(ours, []) is None and paired_ratio(ours, [{"repeat": 5, "throughput": 1.0}]) is None


def test_settle_waits_until_the_server_is_quiet() -> None:
    """After a point, the runner waits while the server still burns CPU (a backlog of abandoned requests)."""
    import subprocess
    import sys

    from benchmarks.runner import settle

    class Busy:  # a process that computes for ~1 s, then sleeps: the shape of a server finishing its backlog
        def __init__(self) -> None:
            code = "import time\nt=time.monotonic()\nwhile time.monotonic()-t<1.0: pass\ntime.sleep(30)"
            self.proc = subprocess.Popen([sys.executable, "-c", code])

        def pids(self) -> list[int]:
            return [self.proc.pid]

    busy = Busy()
    try:
        waited = settle(busy, quiet_cores=0.3, max_s=10.0)  # type: ignore[arg-type]
        assert 0.7 <= waited < 5.0, waited
        assert settle(busy, quiet_cores=0.3, max_s=10.0) < 0.6  # idle now: one sample  # type: ignore[arg-type]
    finally:
        busy.proc.kill()
        busy.proc.wait()


def test_a_paused_server_takes_no_cpu_and_resumes() -> None:
    """The interleaved suite pauses the servers it is not measuring; some burn CPU when idle (LitServe polls).
    Pausing must reach the whole process tree (here a child that spins) and stop() must still work on it."""
    import sys
    import time

    from benchmarks.procs import ServerProcess, ServerSpec, _alive, _session_members
    from benchmarks.promstats import process_tree_cpu

    spin = "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass'])\nwhile True: pass"
    server = ServerProcess(ServerSpec("spinner", [sys.executable, "-c", spin], "http://127.0.0.1:9/"),
                           Path("/tmp/imgserve-test-spinner.log"))
    server.start()
    try:
        def cores(seconds: float) -> float:
            cpu0 = process_tree_cpu(server.pids) or 0.0
            time.sleep(seconds)
            return ((process_tree_cpu(server.pids) or 0.0) - cpu0) / seconds

        time.sleep(0.5)  # the child is up
        assert cores(0.5) > 0.5
        server.pause()
        time.sleep(0.1)
        assert cores(0.6) < 0.05
        server.resume()
        assert cores(0.5) > 0.5
        server.pause()
    finally:
        server.stop(grace_s=2.0)  # resumes first: a stopped process ignores SIGTERM until continued
    # the orphaned child may linger as a zombie until PID 1 reaps it: nothing of it runs
    assert server.proc.poll() is not None and not [p for p in _session_members(server.proc.pid) if _alive(p)]
