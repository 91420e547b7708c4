"""The soak's bookkeeping (benchmarks/soak_report.py): which failures count against the server, and RSS growth
measured from a minute into each worker's life (a restarted worker starts its own baseline)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.soak import Chunk, SoakConfig, _retune
from benchmarks.soak_report import render, rss_growth, summarize


def chunks() -> list[Chunk]:
    out = []
    for i in range(24):  # 10 s chunks; worker 1 lives throughout, worker 2 is killed at t=60 and 3 replaces it
        rss = {"1": 100.0 + i, "2": 200.0} if i < 6 else {"1": 100.0 + i, "3": 50.0 + 10 * i}
        events = ["kill -9 worker 2"] if i == 6 else (["promote v2"] if i == 3 else [])
        errors = {"read": 7} if i == 6 else {}
        out.append(Chunk(t_s=10.0 * i, throughput=100.0, ok=1000, errors=errors, p99_ms=20.0, delay_ms=5.0,
                         events=events, versions=[1 if i < 3 else 2], rss_mb=rss))
    return out


def test_rss_growth_compares_window_medians_from_a_minute_into_each_workers_life() -> None:
    growth = rss_growth(chunks(), settle_s=60.0)
    # worker 1: median of t in [60, 120) (106..111) -> median of its last minute, t > 170 (118..123)
    assert growth["1"]["baseline_mb"] == 108.5 and growth["1"]["end_mb"] == 120.5
    assert growth["1"]["growth_pct"] == round(100 * 12 / 108.5, 1) and growth["1"]["max_mb"] == 123.0
    # 2 was killed after a minute; 3 lived 170 s, short of a settling minute plus two windows
    assert "2" not in growth and "3" not in growth


def test_a_swing_with_the_swap_cycle_is_not_growth() -> None:
    swing = [Chunk(t_s=10.0 * i, throughput=100.0, ok=1000, errors={}, p99_ms=20.0, delay_ms=5.0,
                   rss_mb={"1": 255.0 if i % 3 else 275.0}) for i in range(30)]
    growth = rss_growth(swing, settle_s=60.0)
    assert growth["1"]["growth_pct"] == 0.0 and growth["1"]["max_growth_pct"] == round(100 * 20 / 255, 1)


def test_failures_split_by_kill_chunks_and_render() -> None:
    cfg = SoakConfig(out=Path("/tmp/x"), minutes=2, swap_every_s=30, kill_every_s=60)
    peak = {"throughput": 140.0, "latency_ms": {"p99": 30.0}, "errors": {}}
    result = summarize(cfg, peak, 98.0, (1, 2), chunks())
    assert result["failed_in_kill_chunks"] == 7 and result["failed_elsewhere"] == 0
    assert result["kills"] == 1 and result["swaps"] == 1 and result["requests_ok"] == 24_000
    text = render(result)
    assert "| failed requests elsewhere | 0 |" in text and "kill -9 worker 2" in text and "promote v2" in text


def test_retune_reaches_the_target_rate() -> None:
    # 16 connections, 10 ms pause, measured 800 req/s -> cycle 20 ms, latency 10 ms; 400 req/s needs 30 ms pause
    assert _retune(10.0, {"throughput": 800.0}, 400.0, 16) == 30.0
    assert _retune(10.0, {"throughput": 0.0}, 400.0, 16) == 10.0


def test_working_set_growth_compares_every_live_worker_with_the_first_minute() -> None:
    from benchmarks.soak_report import working_set_growth

    result = working_set_growth(chunks(), settle_s=60.0)
    # at t=60 the workers are 1 (106 MB) and 3 (110 MB): the working set is 110 MB
    assert result["baseline_mb"] == 110.0 and result["baseline_t_s"] == 60.0
    assert result["end_mb"] == {"1": 123.0, "3": 280.0}  # worker 2 was killed: not judged at the end
    assert result["growth_pct"] == round(100 * 170 / 110, 1)


def test_pass_figure_is_the_survivors_growth() -> None:
    cfg = SoakConfig(out=Path("/tmp/x"), minutes=2, swap_every_s=30, kill_every_s=60)
    peak = {"throughput": 140.0, "latency_ms": {"p99": 30.0}, "errors": {}}
    result = summarize(cfg, peak, 98.0, (1, 2), chunks())
    assert result["max_rss_growth_pct"] == round(100 * 12 / 108.5, 1)  # worker 1 lived throughout; 3 replaced 2
    assert result["working_set"]["growth_pct"] == round(100 * 170 / 110, 1)
    assert "alive from start to end" in render(result)
