"""Hot swap under 256 concurrent clients: by POST /reload and by the alias watch; no request may fail."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from inference.registry import Registry
from tests.e2e.conftest import Server, running_server
from tests.fixtures import encode_image, register_tiny, sample_image

pytestmark = pytest.mark.e2e

CLIENTS = 256
IMAGE = encode_image(sample_image(), "PNG")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("hot-swap")
    registry = Registry(tmp / "models")
    for seed in range(3):
        register_tiny(registry, seed=seed)  # v1 (production), v2, v3
    # Defaults otherwise (queue 256, lanes = cores): 256 clients must fit without any shedding.
    with running_server(registry, tmp, poll_interval_s=0.5) as srv:
        yield srv


async def load_during(url: str, action, settle_s: float = 0.5) -> tuple[Counter[int], list[int], object]:  # noqa: ANN001
    """Keep CLIENTS requests in flight, run ``action`` (sync, in a thread) meanwhile, then keep going for
    ``settle_s``. Returns status counts, the model version of each answer in completion order, and the
    action's result."""
    statuses: Counter[int] = Counter()
    versions: list[int] = []
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:

        async def worker() -> None:
            while not stop.is_set():
                resp = await client.post("/predict", content=IMAGE, headers={"content-type": "image/png"})
                statuses[resp.status_code] += 1
                if resp.status_code == 200:
                    versions.append(resp.json()["model"]["version"])

        workers = [asyncio.create_task(worker()) for _ in range(CLIENTS)]
        while sum(statuses.values()) < CLIENTS:  # every client has had at least about one answer
            await asyncio.sleep(0.01)
        result = await asyncio.to_thread(action)
        await asyncio.sleep(settle_s)
        stop.set()
        await asyncio.gather(*workers)
    return statuses, versions, result


def served_version(server: Server) -> int:
    return int(httpx.get(server.url + "/model").json()["version"])


def test_reload_during_load_drops_nothing(server: Server) -> None:
    assert served_version(server) == 1

    def promote_and_reload() -> dict:
        server.registry.promote("tiny", 2, reason="e2e")
        return httpx.post(server.url + "/reload", timeout=30).json()

    statuses, versions, result = asyncio.run(load_during(server.url, promote_and_reload))
    assert set(statuses) == {200}, statuses
    assert sum(statuses.values()) >= 2 * CLIENTS
    assert result["version"] == 2  # (changed may be False if the alias watch won the race)
    assert set(versions) == {1, 2} and set(versions[-CLIENTS // 2 :]) == {2}
    assert served_version(server) == 2


def test_alias_watch_swaps_during_load(server: Server) -> None:
    def promote_and_wait() -> float:
        t0 = time.monotonic()
        server.registry.promote("tiny", 3, reason="e2e watch")
        while served_version(server) != 3:
            # generous: GET /model itself waits behind 256 busy clients on two shared cores
            assert time.monotonic() - t0 < 30, "the alias watch did not swap within 30 s"
            time.sleep(0.05)
        return time.monotonic() - t0

    statuses, versions, seconds = asyncio.run(load_during(server.url, promote_and_wait))
    assert set(statuses) == {200}, statuses
    assert set(versions) == {2, 3} and set(versions[-CLIENTS // 2 :]) == {3}
    print(f"alias watch swap seen after {seconds:.2f} s under load")


def test_swaps_are_counted(server: Server) -> None:
    text = httpx.get(server.url + "/metrics").text
    swaps = re.search(r'imgserve_model_swaps_total\{model="tiny"\} ([0-9.]+)', text)
    assert swaps and float(swaps[1]) > 0 and float(swaps[1]) % 3 == 0  # per worker: the first load, v2, v3
    assert 'imgserve_model_info{model="tiny",provider="CPUExecutionProvider",variant="int8",version="3"} 1.0' in text
    assert 'imgserve_model_info{model="tiny",provider="CPUExecutionProvider",variant="int8",version="1"} 0.0' in text
