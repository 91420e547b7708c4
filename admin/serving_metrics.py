"""Live serving figures for the dashboard, from the inference service's Prometheus ``/metrics``.

The admin runner scrapes ``/metrics`` itself (no CORS, no token in the browser for the service) and turns two
scrapes into rates: counters and histogram buckets are differenced over the window between them. Metric names
are matched generically (a family whose name contains ``request``, ``latency``/``duration``, ``batch_size``,
``queue`` …), so the page works with the service's own metrics and with BentoML's built-in ones; the names
actually used are returned in ``sources``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any

import httpx

from inference.errors import ImgServeError

from .prom_scrape import Family, Scrape, parse

STATUS_LABELS = ("status", "status_code", "code", "http_response_code", "http_status", "response_code")
ENDPOINT_LABELS = ("endpoint", "path", "route", "handler")
INFRA_ENDPOINTS = ("metrics", "livez", "readyz", "healthz", "health", "docs", "openapi", "favicon")


class ServiceUnreachable(ImgServeError):
    http_status = 502
    grpc_code = "UNAVAILABLE"
    error_type = "service_unreachable"


# ---- which family plays which role -------------------------------------------------------------------
def _rank(fam: Family, prefer: tuple[str, ...] = ()) -> tuple[int, ...]:
    own = 0 if fam.name.startswith(("bentoml_", "python_", "process_")) else 1
    return (*(int(p in fam.name) for p in prefer), own, -len(fam.name))


def _label(labels: dict[str, str], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        if k in labels:
            return labels[k]
    return None


def find_roles(scrape: Scrape) -> dict[str, Family | None]:
    fams = list(scrape.families.values())

    def best(cands: list[Family], prefer: tuple[str, ...] = ()) -> Family | None:
        return max(cands, key=lambda f: _rank(f, prefer), default=None)

    timing = ("latency", "duration", "seconds", "_ms", "size", "bytes", "in_progress", "in_flight", "inflight")
    requests = [
        f for f in fams
        if f.type == "counter" and "request" in f.name and not any(t in f.name for t in timing)
    ]
    requests_with_status = [f for f in requests if any(_label(s.labels, STATUS_LABELS) for s in f.samples)]
    latency = [f for f in fams if f.type == "histogram" and ("latency" in f.name or "duration" in f.name)]
    batch = [f for f in fams if f.type == "histogram" and ("batch_size" in f.name or ("batch" in f.name and "size" in f.name))]
    queue = [f for f in fams if f.type == "gauge" and "queue" in f.name]
    inflight = [f for f in fams if f.type == "gauge" and any(t in f.name for t in ("in_flight", "inflight", "in_progress"))]
    info = [
        f for f in fams if f.type in ("gauge", "info") and "model" in f.name
        and any("version" in s.labels for s in f.samples)
    ]
    return {
        "requests": best(requests_with_status or requests),
        "latency": best(latency, prefer=("request",)),
        "batch_size": best(batch),
        "queue": best(queue, prefer=("depth", "size")),
        "in_flight": best(inflight),
        "model_info": best(info, prefer=("info",)),
    }


def _is_infra(endpoint: str | None) -> bool:
    return bool(endpoint) and any(x in endpoint.lower() for x in INFRA_ENDPOINTS)


# ---- counters -----------------------------------------------------------------------------------------
def _counter_values(fam: Family | None) -> dict[tuple[tuple[str, str], ...], float]:
    if fam is None:
        return {}
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for s in fam.samples:
        if s.name.endswith(("_total", "_count")) or s.name == fam.name:
            key = tuple(sorted(s.labels.items()))
            out[key] = out.get(key, 0.0) + s.value
    return out


def _delta(cur: float, prev: float | None) -> float:
    """Counter increase; a decrease means the service restarted, so everything now counted is new."""
    if prev is None:
        return cur
    return cur - prev if cur >= prev else cur


def _requests(prev: Scrape | None, cur: Scrape, fam: Family | None, dt: float) -> dict[str, Any]:
    now = _counter_values(fam)
    before = _counter_values(prev.families.get(fam.name)) if (prev and fam) else {}
    by_endpoint: dict[str, dict[str, float]] = {}
    by_code: dict[str, dict[str, float]] = {}
    total = window = 0.0
    for key, value in now.items():
        labels = dict(key)
        endpoint = _label(labels, ENDPOINT_LABELS) or "all"
        if _is_infra(endpoint):
            continue
        code = _label(labels, STATUS_LABELS) or ""
        d = _delta(value, before.get(key)) if prev else 0.0
        total += value
        window += d
        ep = by_endpoint.setdefault(endpoint, {"total": 0.0, "window": 0.0, "errors_total": 0.0, "errors_window": 0.0})
        ep["total"] += value
        ep["window"] += d
        if code and _is_error(code):
            ep["errors_total"] += value
            ep["errors_window"] += d
            c = by_code.setdefault(code, {"total": 0.0, "window": 0.0})
            c["total"] += value
            c["window"] += d
    errors_window = sum(c["window"] for c in by_code.values())
    return {
        "requests_total": total,
        "requests_window": window,
        "throughput_rps": (window / dt) if (prev and dt > 0) else None,
        "error_rate": (errors_window / window) if window else None,
        "errors": [{"code": k, **v, "rps": v["window"] / dt if prev and dt > 0 else None} for k, v in sorted(by_code.items())],
        "by_endpoint": [
            {"endpoint": k, **v, "rps": v["window"] / dt if prev and dt > 0 else None}
            for k, v in sorted(by_endpoint.items(), key=lambda kv: -kv[1]["total"])
        ],
    }


def _is_error(code: str) -> bool:
    if code.isdigit():
        return int(code) >= 400
    return code.upper() not in ("OK", "SUCCESS", "2XX")


# ---- histograms ---------------------------------------------------------------------------------------
def _buckets(fam: Family | None, skip_infra: bool = True) -> tuple[dict[float, float], float, float]:
    """Cumulative bucket counts summed over all label sets (except infra endpoints), plus sum and count."""
    buckets: dict[float, float] = {}
    total_sum = total_count = 0.0
    if fam is None:
        return buckets, 0.0, 0.0
    for s in fam.samples:
        if skip_infra and _is_infra(_label(s.labels, ENDPOINT_LABELS)):
            continue
        if s.name.endswith("_bucket") and "le" in s.labels:
            le = float(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
        elif s.name.endswith("_sum"):
            total_sum += s.value
        elif s.name.endswith("_count"):
            total_count += s.value
    return dict(sorted(buckets.items())), total_sum, total_count


def _hist_delta(cur: tuple[dict[float, float], float, float], prev: tuple[dict[float, float], float, float] | None):
    if prev is None:
        return cur
    (cb, cs, cc), (pb, ps, pc) = cur, prev
    if cc < pc:  # restarted
        return cur
    return {le: v - pb.get(le, 0.0) for le, v in cb.items()}, cs - ps, cc - pc


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank q·count."""
    if not buckets:
        return None
    les = sorted(buckets)
    count = buckets[les[-1]] if math.isinf(les[-1]) else max(buckets.values())
    if count <= 0:
        return None
    rank = q * count
    prev_le, prev_cum = 0.0, 0.0
    for le in les:
        cum = buckets[le]
        if cum >= rank:
            if math.isinf(le):
                return prev_le  # above the highest finite bound: the best we can say
            if cum == prev_cum:
                return le
            return prev_le + (le - prev_le) * (rank - prev_cum) / (cum - prev_cum)
        prev_le, prev_cum = le, cum
    return prev_le


def _unit_scale_ms(name: str) -> float:
    return 1.0 if ("_ms" in name or "millisecond" in name) else 1000.0


def _latency(prev: Scrape | None, cur: Scrape, fam: Family | None) -> dict[str, Any]:
    if fam is None:
        return {"window": None, "lifetime": None}
    scale = _unit_scale_ms(fam.name)
    now = _buckets(fam)
    before = _buckets(prev.families.get(fam.name)) if prev and fam.name in prev.families else None

    def summary(h: tuple[dict[float, float], float, float]) -> dict[str, float | None] | None:
        b, s, c = h
        if c <= 0:
            return None
        return {
            "count": c,
            "mean_ms": s / c * scale,
            **{f"p{int(q * 100)}_ms": (v * scale if (v := quantile(q, b)) is not None else None) for q in (0.5, 0.9, 0.99)},
        }

    return {"window": summary(_hist_delta(now, before)) if prev else None, "lifetime": summary(now)}


def _bucket_label(lo: float, hi: float) -> str:
    if math.isinf(hi):
        return f">{lo:g}"
    if hi == int(hi) and lo == int(lo):
        lo_i, hi_i = int(lo) + 1, int(hi)
        return f"{hi_i}" if lo_i >= hi_i else f"{lo_i}–{hi_i}"
    return f"≤{hi:g}"


def _batch(prev: Scrape | None, cur: Scrape, fam: Family | None) -> dict[str, Any] | None:
    if fam is None:
        return None
    now = _buckets(fam, skip_infra=False)
    before = _buckets(prev.families.get(fam.name), skip_infra=False) if prev and fam.name in prev.families else None
    win = _hist_delta(now, before) if prev else ({}, 0.0, 0.0)
    rows, lo = [], 0.0
    prev_total = prev_win = 0.0
    for le, cum in now[0].items():
        wcum = win[0].get(le, 0.0)
        rows.append({"le": le if not math.isinf(le) else None, "label": _bucket_label(lo, le),
                     "total": cum - prev_total, "window": wcum - prev_win})
        prev_total, prev_win, lo = cum, wcum, le
    while len(rows) > 1 and rows[-1]["total"] == 0:  # the unused top of the range
        rows.pop()
    return {
        "buckets": rows,
        "mean_window": (win[1] / win[2]) if win[2] else None,
        "mean_lifetime": (now[1] / now[2]) if now[2] else None,
        "batches_window": win[2],
        "batches_total": now[2],
    }


def _gauge_sum(fam: Family | None) -> float | None:
    if fam is None:
        return None
    return sum(s.value for s in fam.samples)


def _model(fam: Family | None) -> list[dict[str, str]]:
    if fam is None:
        return []
    seen, out = set(), []
    for s in fam.samples:
        if s.value >= 1 and "version" in s.labels:
            key = tuple(sorted(s.labels.items()))
            if key not in seen:
                seen.add(key)
                out.append(dict(s.labels))
    return out


def summarize(prev: Scrape | None, cur: Scrape) -> dict[str, Any]:
    """Two scrapes -> the dashboard's figures (window = ``cur.at - prev.at``; ``prev=None`` gives totals only)."""
    roles = find_roles(cur)
    dt = (cur.at - prev.at) if prev else 0.0
    return {
        "window_seconds": round(dt, 3) if prev else None,
        **_requests(prev, cur, roles["requests"], dt),
        "latency": _latency(prev, cur, roles["latency"]),
        "batch_size": _batch(prev, cur, roles["batch_size"]),
        "queue_depth": _gauge_sum(roles["queue"]),
        "in_flight": _gauge_sum(roles["in_flight"]),
        "models": _model(roles["model_info"]),
        "sources": {k: (f.name if f else None) for k, f in roles.items()},
    }


class MetricsPoller:
    """Scrapes on demand and keeps recent scrapes, so several open pages share the same windows.

    The window compares the newest scrape with the most recent one at least ``window_s`` older (or the
    oldest kept); the very first request scrapes twice, ``first_gap_s`` apart, so rates exist at once."""

    def __init__(self, service_url: str | None, *, window_s: float = 10.0, keep_s: float = 300.0,
                 first_gap_s: float = 1.0, min_interval_s: float = 0.5, timeout_s: float = 5.0):
        self.service_url = service_url.rstrip("/") if service_url else None
        self.window_s, self.keep_s, self.first_gap_s = window_s, keep_s, first_gap_s
        self.min_interval_s, self.timeout_s = min_interval_s, timeout_s
        self._history: deque[Scrape] = deque()
        self._lock = asyncio.Lock()

    async def _scrape(self) -> Scrape:
        if not self.service_url:
            raise ServiceUnreachable("no inference service configured (IMGSERVE_SERVICE_URL)")
        url = f"{self.service_url}/metrics"
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                r = await client.get(url)
        except httpx.HTTPError as exc:
            raise ServiceUnreachable(f"cannot reach the inference service at {self.service_url}: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise ServiceUnreachable(f"the inference service's /metrics answered HTTP {r.status_code}")
        try:
            return parse(r.text)
        except ValueError as exc:
            raise ServiceUnreachable(f"the inference service's /metrics is not Prometheus text: {exc}") from None

    @property
    def latest(self) -> Scrape | None:
        """The newest scrape (after :meth:`summary`): the rollout panel reads imgserve's own families from it."""
        return self._history[-1] if self._history else None

    async def summary(self, window_s: float | None = None) -> dict[str, Any]:
        window = self.window_s if window_s is None else max(0.5, float(window_s))
        async with self._lock:
            now = time.monotonic()
            if not self._history or now - self._history[-1].at >= self.min_interval_s:
                if not self._history or now - self._history[-1].at > self.keep_s:
                    self._history.clear()
                    self._history.append(await self._scrape())
                    await asyncio.sleep(self.first_gap_s)
                self._history.append(await self._scrape())
            cur = self._history[-1]
            while self._history and cur.at - self._history[0].at > self.keep_s:
                self._history.popleft()
            older = [s for s in self._history if cur.at - s.at >= window]
            prev = older[-1] if older else (self._history[0] if self._history[0] is not cur else None)
        out = summarize(prev, cur)
        out["service_url"] = self.service_url
        out["scraped_at"] = time.time()
        return out
