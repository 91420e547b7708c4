"""The floor servers (benchmarks/floors): each starts, answers /predict with its fixed JSON after reading the
whole body, and ``python -m benchmarks.ab`` measures both with wrk and their CPU per request."""

from __future__ import annotations

import json
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from benchmarks import ab
from benchmarks.floors import ANSWER
from benchmarks.procs import ServerSpec, free_port, running
from benchmarks.targets import REPO_ROOT
from benchmarks.wrk import wrk_path

pytest.importorskip("bentoml")


def _specs(home: Path) -> list[ServerSpec]:
    bare, floor = free_port(), free_port()
    env = {"PYTHONPATH": str(REPO_ROOT)}
    return [
        ServerSpec("bare", [sys.executable, "-m", "benchmarks.floors.uvicorn_bare", "--port", str(bare)],
                   ready_url=f"http://127.0.0.1:{bare}/readyz", env=env, cwd=REPO_ROOT, ready_timeout_s=30),
        ServerSpec("bentoml", [sys.executable, "-m", "bentoml", "serve", "benchmarks.floors.bentoml_floor:Floor",
                               "--host", "127.0.0.1", "--port", str(floor)],
                   ready_url=f"http://127.0.0.1:{floor}/readyz", env={**env, "BENTOML_HOME": str(home)},
                   cwd=REPO_ROOT, ready_timeout_s=90),
    ]


def _post(url: str, body: bytes) -> dict:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "image/png"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
        assert resp.status == 200
        return json.loads(resp.read())


def test_floor_servers_answer_and_ab_measures_them(capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bare, floor = _specs(Path(tmp) / "bentoml-home")
        with running(bare, Path(tmp) / "bare.log") as b, running(floor, Path(tmp) / "floor.log") as f:
            urls = [s.ready_url.replace("/readyz", "/predict") for s in (bare, floor)]
            for url in urls:
                assert _post(url, b"x" * 200_000) == json.loads(ANSWER)  # a body bigger than one read
            if wrk_path() is None:
                pytest.skip("wrk is not installed (make test installs Debian's wrk)")
            rc = ab.main([f"bare={urls[0]}@{b.proc.pid}", f"bentoml={urls[1]}@{f.proc.pid}", "-c", "4",
                          "--duration", "1", "--warmup", "0.5", "--rounds", "1", "--encoding", "raw"])
    assert rc == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("median")]
    assert len(lines) == 2
    for line in lines:
        cpu = float(line.split("cpu ")[1].split(" ms")[0])
        assert 0.0 < cpu < 50.0, line  # the server's own CPU per request, read from /proc
