"""``bentoml serve .`` on an ``s3://`` registry (a real moto_server process): serves /predict from its verified
local cache, and follows a promote made elsewhere (the alias watch polls the ETag) with no failed request."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from inference.registry import Registry
from tests.e2e.conftest import running_server
from tests.fixtures import encode_image, register_tiny, sample_image

pytestmark = pytest.mark.e2e

IMAGE = encode_image(sample_image(), "PNG")
POLL_S = 0.5


def test_serves_from_s3_and_hot_swaps_after_a_promote(s3_registry: Registry, tmp_path: Path) -> None:
    for seed in range(2):
        register_tiny(s3_registry, seed=seed)  # v1 (production), v2
    cache = tmp_path / "replica-cache"
    with running_server(s3_registry, tmp_path, poll_interval_s=POLL_S, workers=1, cache_dir=cache) as srv:
        with srv.client() as client:
            r = client.post("/predict", content=IMAGE, headers={"content-type": "image/png"})
            assert r.status_code == 200, r.text
            assert r.json()["model"]["version"] == 1
            assert (cache / "s3").is_dir() and list(cache.rglob("model.int8.onnx"))  # loaded from the local cache

            statuses: Counter[int] = Counter()
            seen: list[tuple[float, int]] = []
            stop = threading.Event()

            def load() -> None:
                with srv.client() as c:
                    while not stop.is_set():
                        resp = c.post("/predict", content=IMAGE, headers={"content-type": "image/png"})
                        statuses[resp.status_code] += 1
                        if resp.status_code == 200:
                            seen.append((time.monotonic(), resp.json()["model"]["version"]))

            threads = [threading.Thread(target=load) for _ in range(4)]
            [t.start() for t in threads]
            time.sleep(0.5)
            promoted_at = time.monotonic()
            Registry(s3_registry.root, cache_dir=tmp_path / "admin-cache").promote("tiny", 2, reason="e2e")
            promote_s = time.monotonic() - promoted_at
            deadline = promoted_at + 30
            while time.monotonic() < deadline and not any(v == 2 for _, v in seen):
                time.sleep(0.05)
            time.sleep(0.5)
            stop.set()
            [t.join(timeout=30) for t in threads]

            first_v2 = min((t for t, v in seen if v == 2), default=None)
            assert first_v2 is not None, f"still on v1 30 s after the promote; statuses {statuses}"
            assert set(statuses) == {200}, statuses
            assert seen[-1][1] == 2
            print(f"s3 hot swap: v2 served {first_v2 - promoted_at:.2f} s after the promote started "
                  f"(the promote itself, from a fresh process-side client: {promote_s:.2f} s; poll {POLL_S} s); "
                  f"{sum(statuses.values())} requests, 0 failed")
            assert "now serving tiny:2:int8 (was tiny:1:int8)" in srv.log_text()
