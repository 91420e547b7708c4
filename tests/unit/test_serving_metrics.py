from __future__ import annotations

import math

import pytest

from admin.prom_scrape import parse
from admin.serving_metrics import find_roles, quantile, summarize

LAT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1)


def exposition(*, ok: int, bad: int, lat: dict[float, int], batches: dict[int, int], queue: int = 3,
               metrics_scrapes: int = 7, version: str = "2") -> str:
    """Prometheus text shaped like the service's metrics (cumulative histograms)."""
    lines = [
        "# HELP imgserve_requests_total requests", "# TYPE imgserve_requests_total counter",
        f'imgserve_requests_total{{endpoint="/predict",status="200"}} {ok}',
        f'imgserve_requests_total{{endpoint="/predict",status="400"}} {bad}',
        f'imgserve_requests_total{{endpoint="/metrics",status="200"}} {metrics_scrapes}',
        "# HELP imgserve_request_duration_seconds latency", "# TYPE imgserve_request_duration_seconds histogram",
    ]
    cum, total_sum = 0, 0.0
    for le in LAT_BUCKETS:
        cum += lat.get(le, 0)
        total_sum += lat.get(le, 0) * le
        lines.append(f'imgserve_request_duration_seconds_bucket{{endpoint="/predict",le="{le}"}} {cum}')
    lines += [f'imgserve_request_duration_seconds_bucket{{endpoint="/predict",le="+Inf"}} {cum}',
              f'imgserve_request_duration_seconds_sum{{endpoint="/predict"}} {total_sum}',
              f'imgserve_request_duration_seconds_count{{endpoint="/predict"}} {cum}',
              # scrapes of /metrics itself are not traffic
              'imgserve_request_duration_seconds_bucket{endpoint="/metrics",le="0.005"} 1000',
              'imgserve_request_duration_seconds_bucket{endpoint="/metrics",le="+Inf"} 1000',
              'imgserve_request_duration_seconds_count{endpoint="/metrics"} 1000',
              'imgserve_request_duration_seconds_sum{endpoint="/metrics"} 1',
              "# HELP imgserve_batch_size rows", "# TYPE imgserve_batch_size histogram"]
    cum = 0
    bsum = 0
    for le in (1, 2, 4, 8, 16):
        cum += batches.get(le, 0)
        bsum += batches.get(le, 0) * le
        lines.append(f'imgserve_batch_size_bucket{{le="{float(le)}"}} {cum}')
    lines += [f'imgserve_batch_size_bucket{{le="+Inf"}} {cum}', f"imgserve_batch_size_sum {bsum}", f"imgserve_batch_size_count {cum}",
              "# HELP imgserve_queue_depth q", "# TYPE imgserve_queue_depth gauge", f"imgserve_queue_depth {queue}",
              "# HELP imgserve_queue_wait_seconds w", "# TYPE imgserve_queue_wait_seconds histogram",
              'imgserve_queue_wait_seconds_bucket{le="+Inf"} 5', "imgserve_queue_wait_seconds_count 5", "imgserve_queue_wait_seconds_sum 0.1",
              "# HELP imgserve_requests_in_flight f", "# TYPE imgserve_requests_in_flight gauge", "imgserve_requests_in_flight 2",
              "# HELP imgserve_model_info m", "# TYPE imgserve_model_info gauge",
              'imgserve_model_info{model="fashion",variant="int8",version="1"} 0',
              f'imgserve_model_info{{model="fashion",variant="int8",version="{version}"}} 1']
    return "\n".join(lines) + "\n"


def test_two_scrapes_give_rates_quantiles_and_distributions() -> None:
    a = parse(exposition(ok=100, bad=2, lat={0.005: 60, 0.01: 40}, batches={1: 50, 2: 25}), at=10.0)
    b = parse(exposition(ok=300, bad=12, lat={0.005: 160, 0.01: 120, 0.05: 30}, batches={1: 120, 2: 60, 4: 20},
                         metrics_scrapes=9), at=20.0)
    s = summarize(a, b)
    assert s["window_seconds"] == 10.0
    assert s["throughput_rps"] == pytest.approx((200 + 10) / 10)  # /metrics scrapes are left out
    assert s["requests_total"] == 312
    assert s["error_rate"] == pytest.approx(10 / 210)
    assert s["errors"] == [{"code": "400", "total": 12.0, "window": 10.0, "rps": 1.0}]
    assert [e["endpoint"] for e in s["by_endpoint"]] == ["/predict"]
    win = s["latency"]["window"]
    # window: 100 in (0, 5ms], 80 in (5, 10], 30 in (25, 50] -> 210 requests
    assert win["count"] == 210
    assert win["p50_ms"] == pytest.approx(5 + 5 * (105 - 100) / 80)
    assert 25 < win["p99_ms"] <= 50
    assert s["latency"]["lifetime"]["count"] == 310
    batch = s["batch_size"]
    assert [(r["label"], r["window"], r["total"]) for r in batch["buckets"]] == [("1", 70, 120), ("2", 35, 60), ("3–4", 20, 20)]
    assert batch["mean_window"] == pytest.approx((70 + 2 * 35 + 4 * 20) / 125)
    assert s["queue_depth"] == 3 and s["in_flight"] == 2
    assert s["models"] == [{"model": "fashion", "variant": "int8", "version": "2"}]
    assert s["sources"] == {
        "requests": "imgserve_requests", "latency": "imgserve_request_duration_seconds", "batch_size": "imgserve_batch_size",
        "queue": "imgserve_queue_depth", "in_flight": "imgserve_requests_in_flight", "model_info": "imgserve_model_info",
    }


def test_first_scrape_has_totals_but_no_rates() -> None:
    s = summarize(None, parse(exposition(ok=5, bad=0, lat={0.005: 5}, batches={1: 5})))
    assert s["throughput_rps"] is None and s["window_seconds"] is None
    assert s["requests_total"] == 5 and s["latency"]["window"] is None and s["latency"]["lifetime"]["count"] == 5


def test_counter_reset_counts_what_the_restarted_service_did() -> None:
    a = parse(exposition(ok=1000, bad=0, lat={0.005: 1000}, batches={1: 1000}), at=0.0)
    b = parse(exposition(ok=40, bad=0, lat={0.005: 40}, batches={1: 40}), at=10.0)
    s = summarize(a, b)
    assert s["throughput_rps"] == pytest.approx(4.0)
    assert s["latency"]["window"]["count"] == 40


def test_bentoml_builtin_metric_names_are_understood() -> None:
    text = "\n".join([
        "# TYPE bentoml_service_request_total counter",
        'bentoml_service_request_total{endpoint="/predict",http_response_code="200",service_name="s"} 10',
        'bentoml_service_request_total{endpoint="/predict",http_response_code="503",service_name="s"} 2',
        "# TYPE bentoml_service_request_in_progress gauge",
        'bentoml_service_request_in_progress{endpoint="/predict"} 1',
        "# TYPE bentoml_service_request_duration_seconds histogram",
        'bentoml_service_request_duration_seconds_bucket{endpoint="/predict",le="0.1"} 12',
        'bentoml_service_request_duration_seconds_bucket{endpoint="/predict",le="+Inf"} 12',
        'bentoml_service_request_duration_seconds_count{endpoint="/predict"} 12',
        'bentoml_service_request_duration_seconds_sum{endpoint="/predict"} 0.3',
        "# TYPE bentoml_service_adaptive_batch_size histogram",
        'bentoml_service_adaptive_batch_size_bucket{le="1.0"} 3',
        'bentoml_service_adaptive_batch_size_bucket{le="+Inf"} 3',
        "bentoml_service_adaptive_batch_size_count 3",
        "bentoml_service_adaptive_batch_size_sum 3",
    ]) + "\n"
    s = summarize(None, parse(text))
    assert s["sources"]["requests"] == "bentoml_service_request"
    assert s["sources"]["latency"] == "bentoml_service_request_duration_seconds"
    assert s["sources"]["batch_size"] == "bentoml_service_adaptive_batch_size"
    assert s["sources"]["in_flight"] == "bentoml_service_request_in_progress"
    assert s["errors"][0]["code"] == "503" and s["requests_total"] == 12


def test_the_projects_own_metrics_win_over_bentomls() -> None:
    both = exposition(ok=1, bad=0, lat={0.005: 1}, batches={1: 1}) + "\n".join([
        "# TYPE bentoml_service_request_total counter",
        'bentoml_service_request_total{endpoint="/predict",http_response_code="200"} 99',
    ]) + "\n"
    roles = find_roles(parse(both))
    assert roles["requests"].name == "imgserve_requests"


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.1: 10.0, 0.2: 20.0, math.inf: 20.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.15)
    assert quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert quantile(0.99, {0.1: 1.0, math.inf: 10.0}) == pytest.approx(0.1)  # beyond the last finite bound


def test_one_status_vocabulary_for_http_and_grpc_read_by_the_dashboard() -> None:
    """gRPC codes land in ``status`` as their HTTP equivalents (UNAVAILABLE -> 503), told apart by ``protocol``;
    the dashboard's summary counts both protocols' errors under one code."""
    from prometheus_client import REGISTRY, generate_latest

    from serving.metrics import GRPC_TO_HTTP, ServingMetrics

    metrics = ServingMetrics.get()
    before = parse(generate_latest(REGISTRY).decode(), at=0.0)
    metrics.observe_request("/predict", 200, 0.01)
    metrics.observe_request("/predict", 503, 0.01)
    metrics.observe_rpc("grpc:ModelInfer", "OK", 0.01)
    metrics.observe_rpc("grpc:ModelInfer", "UNAVAILABLE", 0.01)
    metrics.observe_rpc("grpc:ModelInfer", "INVALID_ARGUMENT", 0.01)
    text = generate_latest(REGISTRY).decode()
    assert 'imgserve_requests_total{endpoint="grpc:ModelInfer",protocol="grpc",status="503"}' in text
    assert 'protocol="grpc",status="OK"' not in text
    assert {GRPC_TO_HTTP[c] for c in ("OK", "UNAVAILABLE", "UNAUTHENTICATED")} == {200, 503, 401}
    s = summarize(before, parse(text, at=10.0))
    errors = {e["code"]: e["window"] for e in s["errors"]}
    assert errors["503"] == 2 and errors["400"] == 1
    assert s["requests_window"] == 5
