"""Production pointed at a truncated ONNX file (issue 12, finding 4), against a real ``bentoml serve .``.

Before: a worker that (re)started logged "no model to serve yet", ``/readyz`` flapped between workers, ``/model``
answered 503 from that worker, a traceback every 2 s per worker, ``POST /reload`` answered 500. Now: every
worker serves the newest earlier production version that loads, says so once (log, ``/model``, a metric),
``/readyz`` stays 200, ``POST /reload`` answers 409 naming the version and the reason.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from inference.registry import Registry
from tests.e2e.conftest import Server, running_server
from tests.fixtures import encode_image, register_tiny, sample_image

pytestmark = pytest.mark.e2e

WORKERS = 2
POLL_S = 0.3


def truncate(registry: Registry, name: str, version: int) -> None:
    for variant in ("fp32", "int8"):
        path = registry.model_file(name, version, variant)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("corrupt")
    registry = Registry(tmp / "models")
    register_tiny(registry, seed=0)  # v1, production first
    register_tiny(registry, seed=1)  # v2
    registry.promote("tiny", 2, reason="the bad one")
    truncate(registry, "tiny", 2)
    with running_server(registry, tmp, workers=WORKERS, poll_interval_s=POLL_S) as srv:
        yield srv


def fresh_get(server: Server, path: str) -> httpx.Response:
    """A new connection each time, so both workers answer over a series of calls."""
    return httpx.get(server.url + path, headers={"Connection": "close"}, timeout=10)


def failure_lines(server: Server) -> list[str]:
    return [ln for ln in server.log_text().splitlines()
            if "] model 'tiny' v2 (int8) cannot be loaded" in ln and "[ERROR]" in ln]


def test_workers_serve_the_last_good_version_and_say_so(server: Server) -> None:
    statuses = []
    for _ in range(40):  # several alias-watch polls; readiness must never flap
        statuses.append(fresh_get(server, "/readyz").status_code)
        time.sleep(0.05)
    assert set(statuses) == {200}, statuses
    for _ in range(6):
        info = fresh_get(server, "/model").json()
        assert info["version"] == 1, info
        assert info["fallback"]["alias"] == "production" and info["fallback"]["alias_version"] == 2
        assert "v2 (int8) cannot be loaded" in info["fallback"]["reason"]
    metrics = fresh_get(server, "/metrics").text
    assert re.search(r'^imgserve_model_fallback\{model="tiny"\} 1\.0$', metrics, re.M), metrics[-2000:]
    resp = httpx.post(server.url + "/predict", content=encode_image(sample_image(), "PNG"),
                      headers={"content-type": "image/png"})
    assert resp.status_code == 200 and resp.json()["model"]["version"] == 1


def test_reload_answers_409_naming_version_and_reason(server: Server) -> None:
    resp = httpx.post(server.url + "/reload")
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["type"] == "version_not_loadable"
    assert "'tiny' v2 (int8) cannot be loaded" in body["error"] and "still serving v1" in body["error"]
    assert "INVALID_PROTOBUF" in body["error"] or "Protobuf" in body["error"], body  # ORT's reason, no path
    assert str(server.registry.root) not in body["error"]


def test_failures_are_logged_once_per_worker_without_tracebacks(server: Server) -> None:
    time.sleep(10 * POLL_S)  # ten more polls of the alias watch
    log = server.log_text()
    assert "Traceback" not in log, log[-3000:]
    workers = [re.search(r"\[entry_service:imgserve:(\d+)\]", ln).group(1) for ln in failure_lines(server)]
    assert sorted(workers) == [str(w) for w in range(1, WORKERS + 1)], failure_lines(server)
    assert log.count("FALLBACK: tiny@production is v2") == WORKERS
    assert log.count("alias watch: keeping") <= WORKERS  # at most once per worker and reason


def test_a_killed_worker_comes_back_on_the_fallback(server: Server) -> None:
    before = server.log_text().count("FALLBACK: tiny@production is v2")
    worker = psutil.Process(server.proc.pid).children()[0]
    os.kill(worker.pid, signal.SIGKILL)
    statuses, deadline = [], time.monotonic() + 60
    while server.log_text().count("FALLBACK: tiny@production is v2") == before:
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        try:
            statuses.append(fresh_get(server, "/readyz").status_code)
        except httpx.TransportError:
            pass  # a probe that was on the killed worker's connection
        time.sleep(0.1)
    assert 503 not in statuses, statuses  # the other worker served, the new one started on the fallback
    assert "no model to serve yet" not in server.log_text()


def test_promoting_a_good_version_ends_the_fallback(server: Server) -> None:
    register_tiny(server.registry, seed=2)  # v3
    server.registry.promote("tiny", 3, reason="fixed")
    deadline = time.monotonic() + 30
    while True:
        infos = [fresh_get(server, "/model").json() for _ in range(6)]
        if all(i["version"] == 3 and "fallback" not in i for i in infos):
            break
        assert time.monotonic() < deadline, infos
        time.sleep(0.2)
    metrics = fresh_get(server, "/metrics").text  # the worker killed above no longer counts (forget_dead_workers)
    assert re.search(r'^imgserve_model_fallback\{model="tiny"\} 0\.0$', metrics, re.M), metrics[-2000:]
    assert not re.search(r'^imgserve_model_info\{[^}]*version="1"\} 1\.0$', metrics, re.M)
    assert "fallback over: tiny serves its production version again" in server.log_text()
