"""The rollout panel's figures from a real prometheus_client exposition (the service's own metric objects)."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from admin.prom_scrape import parse
from admin.rollout_metrics import rollout_figures
from inference.reference import PSI_SIGNIFICANT


def exposition() -> str:
    reg = CollectorRegistry()
    requests = Counter("imgserve_model_requests", "", ["model", "version", "outcome"], registry=reg)
    seconds = Counter("imgserve_model_request_seconds", "", ["model", "version", "outcome"], registry=reg)
    for version, ok, failed in (("1", 90, 0), ("2", 8, 2)):
        requests.labels("m", version, "success").inc(ok)
        requests.labels("m", version, "fail").inc(failed)
        seconds.labels("m", version, "success").inc(0.001 * ok)
    requests.labels("other", "1", "success").inc(1000)
    compared = Counter("imgserve_shadow_compared", "", ["model", "version"], registry=reg)
    agreed = Counter("imgserve_shadow_agreed", "", ["model", "version"], registry=reg)
    confidence = Counter("imgserve_shadow_confidence", "", ["model", "version", "role"], registry=reg)
    compared.labels("m", "3").inc(40)
    agreed.labels("m", "3").inc(30)
    confidence.labels("m", "3", "production").inc(32)
    confidence.labels("m", "3", "shadow").inc(20)
    Counter("imgserve_canary_aborts", "", ["model", "version"], registry=reg).labels("m", "4").inc()
    psi = Gauge("imgserve_drift_psi", "", ["model", "version", "signal"], registry=reg)
    psi.labels("m", "1", "brightness").set(0.6)
    psi.labels("m", "1", "size").set(0.01)
    psi.labels("m", "0", "size").set(math.nan)  # a version no longer served
    return generate_latest(reg).decode()


def test_rollout_figures() -> None:
    figures = rollout_figures(parse(exposition()), "m")
    v1, v2 = figures["versions"]
    assert (v1["version"], v1["requests"], v1["errors"], v1["error_rate"]) == ("1", 90, 0, 0)
    assert math.isclose(v1["mean_latency_ms"], 1.0)
    assert (v2["requests"], v2["errors"], v2["error_rate"]) == (10, 2, 0.2)
    (shadow,) = figures["shadow"]
    assert shadow["agreement"] == 0.75 and shadow["mean_confidence"] == {"production": 0.8, "shadow": 0.5}
    assert figures["canary_aborts"] == [{"version": "4", "count": 1.0}]
    assert [(d["signal"], d["significant"]) for d in figures["drift"]] == [("brightness", True), ("size", False)]
    assert figures["psi_threshold"] == PSI_SIGNIFICANT


def test_an_unknown_model_has_no_figures() -> None:
    figures = rollout_figures(parse(exposition()), "absent")
    assert figures["versions"] == figures["shadow"] == figures["drift"] == figures["canary_aborts"] == []
