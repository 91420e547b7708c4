"""serving/ratelimit.py: GCRA admits the burst, then the sustained rate, per client; says when to retry."""

from __future__ import annotations

import pytest

from inference.errors import ConfigError, RateLimited
from serving.ratelimit import RateLimit, RateLimiter, client_key, grpc_peer_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("spec", "requests", "period"),
    [("100/minute", 100, 60.0), ("10/s", 10, 1.0), ("5 / Hours", 5, 3600.0), ("7/day", 7, 86400.0),
     ("3/min", 3, 60.0), ("2/seconds", 2, 1.0)],
)
def test_parse(spec: str, requests: int, period: float) -> None:
    limit = RateLimit.parse(spec)
    assert (limit.requests, limit.period_s) == (requests, period)


@pytest.mark.parametrize("spec", ["", "100", "100/fortnight", "-1/minute", "0/minute", "1.5/s", "x/minute"])
def test_parse_rejects_with_a_hint(spec: str) -> None:
    with pytest.raises(ConfigError, match="100/minute|at least 1"):
        RateLimit.parse(spec)


def admitted(limiter: RateLimiter, key: object, n: int) -> int:
    ok = 0
    for _ in range(n):
        try:
            limiter.check(key)
            ok += 1
        except RateLimited:
            pass
    return ok


def test_burst_then_sustained_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit.parse("100/minute"), clock=clock)
    assert admitted(limiter, "a", 150) == 100  # a full bucket: the whole minute's budget at once
    with pytest.raises(RateLimited) as info:
        limiter.check("a")
    assert info.value.http_status == 429 and info.value.grpc_code == "RESOURCE_EXHAUSTED"
    assert info.value.to_dict()["type"] == "rate_limited"
    assert 0 < info.value.retry_after <= 0.6 + 1e-9  # one emission interval: 60 s / 100
    clock.now += info.value.retry_after
    limiter.check("a")  # admitted exactly when told
    clock.now += 30.0  # half a minute refills half the bucket
    assert admitted(limiter, "a", 100) == 50
    assert limiter.refused == 50 + 50 + 1


def test_clients_are_independent_and_an_explicit_burst_caps_the_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit.parse("60/minute", burst=5), clock=clock)
    assert admitted(limiter, "a", 20) == 5
    assert admitted(limiter, "b", 20) == 5
    clock.now += 10.0  # one a second
    assert admitted(limiter, "a", 20) == 5  # refilled up to the burst, not to 10
    with pytest.raises(RateLimited) as info:
        limiter.check("a")
    assert info.value.retry_after == pytest.approx(1.0)


def test_sustained_rate_over_time() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit.parse("10/s"), clock=clock)
    ok = 0
    for _ in range(2000):  # 100 requests a second for 20 s
        clock.now += 0.01
        ok += admitted(limiter, "a", 1)
    assert ok == pytest.approx(10 * 20 + 10, abs=2)  # the initial burst plus 10 a second


def test_memory_is_bounded_and_idle_clients_go_first() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit.parse("1/s"), clock=clock, max_clients=100)
    for i in range(100):
        limiter.check(f"old{i}")
    clock.now += 5.0  # every old bucket is full again: nothing worth remembering
    limiter.check("busy")
    for i in range(300):
        limiter.check(f"new{i}")
    assert limiter.clients <= 100
    with pytest.raises(RateLimited):  # a client refused a moment ago stays refused
        limiter.check("new299")


def test_client_key() -> None:
    a = client_key("Bearer secret-1", "10.0.0.1")
    assert a.startswith("token:") and "secret" not in a
    assert client_key("bearer secret-1", "10.0.0.2") == a  # same token from another address: same client
    assert client_key("Bearer secret-2", "10.0.0.1") != a
    assert client_key(None, "10.0.0.1") == "addr:10.0.0.1"
    assert client_key("Basic dXNlcg==", "10.0.0.1") == "addr:10.0.0.1"
    assert client_key("Bearer ", None) == "addr:unknown"


@pytest.mark.parametrize(
    ("peer", "host"),
    [("ipv4:127.0.0.1:5123", "127.0.0.1"), ("ipv6:[::1]:5123", "::1"), ("unix:/tmp/s", "unix:/tmp/s")],
)
def test_grpc_peer_address(peer: str, host: str) -> None:
    assert grpc_peer_address(peer) == host


def test_one_shared_api_token_counts_by_address() -> None:
    clock = Clock()
    per_token = RateLimiter(RateLimit.parse("2/hour"), clock=clock)
    shared = RateLimiter(RateLimit.parse("2/hour"), clock=clock, by_token=False)
    for host in ("10.0.0.1", "10.0.0.2"):
        assert admitted(per_token, ("Bearer the-one-token", host), 2) == (2 if host == "10.0.0.1" else 0)
        assert admitted(shared, ("Bearer the-one-token", host), 2) == 2
