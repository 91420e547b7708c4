"""Per-client rate limits (``IMGSERVE_RATE_LIMIT=100/minute``): GCRA, one theoretical arrival time per client.

Policy. A client is its bearer token when it sends one (``Authorization: Bearer`` on HTTP, ``authorization``
metadata on gRPC; keyed by a hash, the token itself is never stored) unless the service checks one shared
``IMGSERVE_API_TOKEN`` (then every caller sends the same token, so clients are told apart by address), else its
address as the server sees it
(behind a proxy: uvicorn's ``--forwarded-allow-ips`` decides whether that is the proxy or the client). A limit of
N per period lets a client send N requests at once after being idle for a period, then one every period/N
(GCRA is a token bucket of N tokens refilled continuously, with O(1) state). Over the limit: 429 with
``Retry-After`` (HTTP) or RESOURCE_EXHAUSTED with a ``retry-after`` trailer (gRPC).

Scope: **per worker process, full budget each**. State lives in the worker's memory, so no request pays for a
lock or a round trip to a shared store. A client on one keep-alive connection (requests.Session, httpx.Client,
one gRPC channel) talks to one worker and gets exactly the limit; a client that opens connections to several
workers can get up to ``workers x limit`` per replica and ``replicas x workers x limit`` across replicas. The
budget is not split between workers because a connection-pinned client would then get only ``limit / workers``.
This is an abuse guard for one replica, not a quota: an exact cluster-wide quota belongs in a shared store at
the gateway (nginx ``limit_req``, Envoy's global rate limit service).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inference.errors import ConfigError, RateLimited

_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}
_SPEC_RE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+?)s?\s*$")
MAX_CLIENTS = 100_000
Client = tuple["str | None", "str | None"]  # (Authorization value, client address) as a transport sees them  # tracked per worker; idle clients (bucket full again) are dropped first


@dataclass(frozen=True)
class RateLimit:
    """``requests`` per ``period_s`` seconds, up to ``burst`` at once (default: ``requests``)."""

    requests: int
    period_s: float
    burst: int = 0

    def __post_init__(self) -> None:
        if self.requests < 1 or self.period_s <= 0:
            raise ConfigError("a rate limit needs at least 1 request per a positive period")
        if self.burst < 0:
            raise ConfigError("the burst of a rate limit must be >= 0 (0 = the limit's request count)")

    @classmethod
    def parse(cls, spec: str, burst: int = 0) -> RateLimit:
        """``"100/minute"``, ``"10/s"``, ``"5000/hour"``, ``"100000/day"``."""
        match = _SPEC_RE.match(spec.lower())
        if not match or match.group(2) not in _PERIODS:
            raise ConfigError(
                f"invalid rate limit {spec!r}: write N/second, N/minute, N/hour or N/day (e.g. 100/minute)"
            )
        return cls(int(match.group(1)), _PERIODS[match.group(2)], burst)

    @property
    def interval_s(self) -> float:
        """Seconds between two requests at the sustained rate (GCRA's emission interval)."""
        return self.period_s / self.requests

    def __str__(self) -> str:
        return f"{self.requests}/{self.period_s:g}s (burst {self.burst or self.requests})"


class RateLimiter:
    """The worker's limiter: ``check(key)`` admits a request or raises :class:`RateLimited`."""

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_CLIENTS, by_token: bool = True) -> None:
        self.limit = limit
        self.by_token = by_token  # False when every client presents the one shared IMGSERVE_API_TOKEN
        self._clock = clock
        self._interval = limit.interval_s
        self._tolerance = self._interval * ((limit.burst or limit.requests) - 1)  # how far ahead a TAT may run
        self._tat: dict[str, float] = {}  # theoretical arrival time per client
        self._max_clients = max_clients
        self.refused = 0

    def check(self, client: Client | str) -> None:
        """``client`` is a transport's ``(authorization, address)`` (:func:`http_client`, :func:`grpc_client`) or
        a key already made."""
        key = client if isinstance(client, str) else client_key(*client, by_token=self.by_token)
        now = self._clock()
        tat = max(self._tat.get(key, now), now)
        if tat - now > self._tolerance:
            self.refused += 1
            wait = tat - self._tolerance - now
            raise RateLimited(
                f"rate limit of {self.limit.requests} requests per {self.limit.period_s:g} s exceeded; "
                f"retry in {math.ceil(wait)} s",
                retry_after=wait,
            )
        if key not in self._tat and len(self._tat) >= self._max_clients:
            self._evict(now)
        self._tat[key] = tat + self._interval

    def _evict(self, now: float) -> None:
        """Forget clients whose bucket is full again (nothing to remember), else the oldest-tracked half."""
        idle = [k for k, t in self._tat.items() if t <= now]
        for k in idle or list(self._tat)[: len(self._tat) // 2]:
            del self._tat[k]

    @property
    def clients(self) -> int:
        return len(self._tat)


def client_key(authorization: str | None, address: str | None, *, by_token: bool = True) -> str:
    """The client a request counts against: its bearer token (hashed) if it sent one, else its address."""
    scheme, _, token = (authorization or "").partition(" ")
    if by_token and scheme.lower() == "bearer" and token.strip():
        return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:24]
    return "addr:" + (address or "unknown")


def grpc_peer_address(peer: str) -> str:
    """``ipv4:1.2.3.4:5678`` / ``ipv6:[::1]:5678`` / ``unix:...`` (grpc's ``context.peer()``) -> the host."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")
    return peer


def http_client(request: Any) -> Client:
    """Who sent a Starlette request (hashed into a key only when a limit is configured)."""
    return request.headers.get("authorization"), request.client.host if request.client else None


def grpc_client(context: Any) -> Client:
    """Who made a gRPC call: its ``authorization`` metadata and the peer's address."""
    metadata = {m.key: m.value for m in (context.invocation_metadata() or ())}
    return metadata.get("authorization"), grpc_peer_address(context.peer() or "")
