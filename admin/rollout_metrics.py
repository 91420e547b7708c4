"""The rollout figures of one model from a scrape of the service's ``/metrics``: per-version requests, errors
and mean latency (canary vs production), automatic canary aborts, shadow agreement and confidence, drift PSI.

Why separate from :mod:`admin.serving_metrics`: that module finds families generically (it also reads
BentoML's own metrics); these are imgserve's own families (serving/metrics.py), read by their exact names.
Figures are totals since the service started (counters summed over workers by Prometheus' multiprocess mode).
"""

from __future__ import annotations

import math
from typing import Any

from inference.reference import PSI_SIGNIFICANT

from .prom_scrape import Scrape


def _samples(scrape: Scrape, family: str, model: str) -> list[tuple[dict[str, str], float]]:
    fam = scrape.families.get(family)
    if fam is None:
        return []
    return [(s.labels, s.value) for s in fam.samples
            if s.labels.get("model") == model and not s.name.endswith("_created")]


def _by_version(rows: dict[str, dict[str, Any]], version: str, **zero: float) -> dict[str, Any]:
    return rows.setdefault(version, {"version": version, **zero})


def _per_version(scrape: Scrape, model: str) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for labels, value in _samples(scrape, "imgserve_model_requests", model):
        row = _by_version(rows, labels["version"], requests=0.0, errors=0.0, seconds=0.0)
        row["requests"] += value
        if labels.get("outcome") != "success":
            row["errors"] += value
    for labels, value in _samples(scrape, "imgserve_model_request_seconds", model):
        _by_version(rows, labels["version"], requests=0.0, errors=0.0, seconds=0.0)["seconds"] += value
    for row in rows.values():
        n = row.pop("requests")
        seconds = row.pop("seconds")
        row.update(requests=n, error_rate=row["errors"] / n if n else None,
                   mean_latency_ms=1e3 * seconds / n if n else None)
    return sorted(rows.values(), key=lambda r: int(r["version"]) if r["version"].isdigit() else 0)


def _shadow(scrape: Scrape, model: str) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for family, key in (("imgserve_shadow_compared", "compared"), ("imgserve_shadow_agreed", "agreed"),
                        ("imgserve_shadow_shed", "shed")):
        for labels, value in _samples(scrape, family, model):
            _by_version(rows, labels["version"], compared=0.0, agreed=0.0, shed=0.0)[key] += value
    confidence: dict[tuple[str, str], float] = {}
    for labels, value in _samples(scrape, "imgserve_shadow_confidence", model):
        _by_version(rows, labels["version"], compared=0.0, agreed=0.0, shed=0.0)
        key = (labels["version"], labels.get("role", "shadow"))
        confidence[key] = confidence.get(key, 0.0) + value
    for v, row in rows.items():
        n = row["compared"]
        row["agreement"] = row["agreed"] / n if n else None
        row["mean_confidence"] = {role: (confidence.get((v, role), 0.0) / n if n else None)
                                  for role in ("production", "shadow")}
    return list(rows.values())


def rollout_figures(scrape: Scrape, model: str) -> dict[str, Any]:
    """What the rollout panel shows for ``model``, from one scrape."""
    aborts = [{"version": labels["version"], "count": value}
              for labels, value in _samples(scrape, "imgserve_canary_aborts", model) if value > 0]
    drift = [{"version": labels["version"], "signal": labels["signal"], "psi": value,
              "significant": value > PSI_SIGNIFICANT}
             for labels, value in _samples(scrape, "imgserve_drift_psi", model) if math.isfinite(value)]
    drift.sort(key=lambda d: (d["version"], d["signal"]))
    return {
        "versions": _per_version(scrape, model),
        "canary_aborts": aborts,
        "shadow": _shadow(scrape, model),
        "drift": drift,
        "psi_threshold": PSI_SIGNIFICANT,
    }
