"""Steady, bounded load for the replica rehearsal: a few clients on their own thread, each sending one image
at a time at a capped rate, recording what every request got (status, version, which replica, or the error).

Bounded on purpose: the rehearsal runs on a small shared machine beside three replicas, so the load is a
steady trickle (at most ``clients x rate_per_client`` requests a second), not a benchmark.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

CLIENTS, RATE = 6, 5.0  # 30 requests a second at most: steady, and light enough for 2 shared cores


@dataclass(frozen=True)
class Sample:
    sent: float  # seconds since the load's clock started
    done: float
    status: int  # 0: no HTTP response at all (see ``error``)
    version: int | None = None
    replica: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Load:
    url: str
    image: bytes
    replica_header: str
    clients: int = CLIENTS
    rate_per_client: float = RATE
    t0: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="load", daemon=True)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.samples

    async def _run(self) -> None:
        # One connection per client, kept alive (as a real client's pool would); the balancer decides where
        # each request goes.
        limits = httpx.Limits(max_connections=self.clients, max_keepalive_connections=self.clients)
        async with httpx.AsyncClient(base_url=self.url, timeout=30.0, limits=limits) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient) -> None:
        period = 1.0 / self.rate_per_client
        while not self._stop.is_set():
            sent = self.now()
            self.samples.append(await self._one(client, sent))
            await asyncio.sleep(max(0.0, sent + period - self.now()))

    async def _one(self, client: httpx.AsyncClient, sent: float) -> Sample:
        try:
            resp = await client.post("/predict", content=self.image, headers={"content-type": "image/png"})
        except httpx.HTTPError as exc:
            return Sample(sent, self.now(), 0, error=f"{type(exc).__name__}: {exc}"[:200])
        replica = resp.headers.get(self.replica_header)
        if resp.status_code != 200:
            return Sample(sent, self.now(), resp.status_code, replica=replica, error=resp.text[:200])
        return Sample(sent, self.now(), 200, version=int(resp.json()["model"]["version"]), replica=replica)


def failures(samples: list[Sample]) -> Counter[str]:
    """What the clients saw that was not a 200, by kind ("503", "RemoteProtocolError", …)."""
    out: Counter[str] = Counter()
    for s in samples:
        if not s.ok:
            out[str(s.status) if s.status else (s.error or "?").split(":", 1)[0]] += 1
    return out
