"""Locust users for imgserve: people uploading photos, now and then a small album, sometimes checking which
model answers. Open-loop-ish (think time between requests), unlike the closed-loop ``benchmarks.load``.

    locust -f benchmarks/locustfile.py --headless -u 20 -r 20 -t 30s --host http://127.0.0.1:3000

Environment:
    IMGSERVE_BENCH_CORPUS   jpeg-640x480 (default) or png-28-gray (the default Fashion-MNIST model)
    IMGSERVE_BENCH_WAIT     think time range in seconds, "MIN,MAX" (default "0.2,1.0")
    IMGSERVE_BENCH_ALBUM    images per /predict_batch request, "MIN,MAX" (default "2,8")

Only loopback hosts are accepted. 503s (imgserve's load shedding) are reported as failures named
"overloaded (503)" so they stand apart from real errors.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

from locust import HttpUser, between, events, task

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # locust -f loads this file by path

from benchmarks.clients import check_loopback  # noqa: E402
from benchmarks.corpus import load_corpus  # noqa: E402


def _range(name: str, default: str, cast: type = float) -> tuple:
    lo, _, hi = os.environ.get(name, default).partition(",")
    return cast(lo), cast(hi or lo)


CORPUS = load_corpus(os.environ.get("IMGSERVE_BENCH_CORPUS", "jpeg-640x480"))
WAIT = _range("IMGSERVE_BENCH_WAIT", "0.2,1.0")
ALBUM = _range("IMGSERVE_BENCH_ALBUM", "2,8", int)


@events.init.add_listener
def _only_loopback(environment, **kwargs) -> None:
    host = environment.host or getattr(environment.parsed_options, "host", None) or ""
    if not host:
        return  # the web UI asks for it later: PhotoUser.on_start checks it then
    try:
        check_loopback(host)
    except ValueError as exc:
        print(f"locustfile: {exc}", file=sys.stderr)
        os._exit(2)  # before any user starts; locust would otherwise run on to --run-time


def _file(field: str, i: int) -> tuple[str, tuple[str, bytes, str]]:
    data = CORPUS.images[i % len(CORPUS.images)]
    return field, (f"photo{i}{CORPUS.suffix}", data, CORPUS.content_type)


class PhotoUser(HttpUser):
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        check_loopback(self.host or "")  # raises: this user sends nothing
        self.offset = random.randrange(len(CORPUS.images))

    def _check(self, resp) -> None:
        if resp.status_code == 503:
            resp.failure("overloaded (503)")
        elif resp.status_code != 200:
            resp.failure(f"HTTP {resp.status_code}")
        else:
            resp.success()

    @task(8)
    def predict(self) -> None:
        self.offset += 1
        with self.client.post("/predict", files=[_file("image", self.offset)], catch_response=True,
                              name="/predict") as resp:
            self._check(resp)

    @task(2)
    def predict_batch(self) -> None:
        n = random.randint(*ALBUM)
        files = [_file("images", self.offset + k) for k in range(n)]
        self.offset += n
        with self.client.post("/predict_batch", files=files, catch_response=True, name="/predict_batch") as resp:
            self._check(resp)

    @task(1)
    def model(self) -> None:
        with self.client.get("/model", catch_response=True, name="/model") as resp:
            self._check(resp)
