"""The artifact users deploy: ``bentoml build``, then serve that bento the way its container would.

This is the container's contents without a Docker engine (there is none on the development machine, and CI
has none either): the bento built by ``bentoml build`` into a temporary ``BENTOML_HOME``, a fresh virtualenv
holding only what the bento's own ``env/python/requirements.txt`` lists (the file the generated Dockerfile
installs with ``uv pip install -r``; no project install, no TensorFlow), and ``bentoml serve imgserve:latest``
from the store with the working directory outside the checkout, as the image's entrypoint runs it. Only the
base image's OS layer is not exercised. A serving module that imports something the bento does not ship (the
``imgserve`` package once: every worker died with ``ModuleNotFoundError``) fails here.

Needs the package index (PyPI, or ``UV_DEFAULT_INDEX``) for the lock and the virtualenv. Timing (2 vCPU, shared): build with the package lock ~10 s, virtualenv ~7 s with a warm uv cache (a cold one
downloads ~100 MB), server ready ~10 s.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serving.settings import DEFAULT_MODEL, ServeSettings
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "tf-keras")
NOT_SHIPPED = ("training", "export", "admin", "imgserve", "tests", "benchmarks", "data", "runs", "deploy")


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    assert out.returncode == 0, f"{cmd[:4]} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@dataclass
class Bento:
    home: Path
    path: Path  # <home>/bentos/imgserve/<version>
    venv: Path


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> Bento:
    tmp = tmp_path_factory.mktemp("bento")
    home = tmp / "bentoml-home"
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    out = _run([sys.executable, "-m", "bentoml", "build", "-o", "tag"], cwd=ROOT, env=env)  # as a user would
    tag = re.search(r"imgserve:(\w+)", out.stdout)
    assert tag, out.stdout
    path = home / "bentos" / "imgserve" / tag.group(1)
    # The image's environment: a clean interpreter plus the bento's requirements, nothing from this checkout.
    venv = tmp / "venv"
    _run([_uv(), "venv", "-q", "--python", sys._base_executable, str(venv)])  # type: ignore[attr-defined]
    _run([_uv(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
          "-r", str(path / "env" / "python" / "requirements.txt")])
    return Bento(home, path, venv)


def test_bento_ships_serving_code_and_locked_requirements(bento: Bento) -> None:
    lines = [ln.strip() for ln in (bento.path / "env/python/requirements.txt").read_text().splitlines()]
    packages = [ln for ln in lines if ln and not ln.startswith(("#", "-"))]
    unpinned = [p for p in packages if "==" not in p]
    assert not unpinned, f"lock_packages should pin every package: {unpinned}"
    names = {re.split(r"[=\[ ;]", p)[0].lower() for p in packages}
    assert {"bentoml", "onnxruntime", "numpy", "pillow", "grpcio", "tritonclient", "protobuf"} <= names
    assert not names & set(FORBIDDEN), names & set(FORBIDDEN)

    src = bento.path / "src"
    files = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()}
    assert {"service.py", "serving/runtime.py", "inference/session.py", "inference/version.py"} <= files
    assert f"models/{DEFAULT_MODEL}/aliases.json" in files
    assert any(f.startswith(f"models/{DEFAULT_MODEL}/versions/") and f.endswith("/model.int8.onnx") for f in files)
    leaked = [f for f in files if f.split("/")[0] in NOT_SHIPPED or f.endswith(".keras")]
    assert not leaked, leaked

    dockerfile = (bento.path / "env/docker/Dockerfile").read_text()
    assert "EXPOSE 3000" in dockerfile
    # the gRPC port travels with the image as a default, equal to the settings' default (docs/deploying.md)
    grpc_port = ServeSettings.model_fields["grpc_port"].default
    assert f"ARG IMGSERVE_GRPC_PORT={grpc_port}" in dockerfile
    assert "requirements.txt" in dockerfile  # what the image installs is the file the venv below was built from


def test_bento_env_has_no_project_and_no_tensorflow(bento: Bento) -> None:
    probe = "import importlib.util as u; print([m for m in ('imgserve', 'tensorflow', 'keras', 'inference', " \
            "'serving') if u.find_spec(m)])"
    out = _run([str(bento.venv / "bin/python"), "-c", probe], cwd=bento.venv, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout


@dataclass
class Served:
    url: str
    grpc: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def served(bento: Bento, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cwd = tmp_path_factory.mktemp("elsewhere")  # not the checkout: nothing importable from it
    port, grpc_port = free_port(), free_port()
    env = {
        "PATH": f"{bento.venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(cwd),
        "LANG": "C.UTF-8",
        "BENTOML_HOME": str(bento.home),
        "BENTOML_DO_NOT_TRACK": "true",
        "IMGSERVE_GRPC_PORT": str(grpc_port),
        "IMGSERVE_GRPC_HOST": "127.0.0.1",
    }
    log = cwd / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(bento.venv / "bin/bentoml"), "serve", "imgserve:latest", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    srv = Served(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", proc, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"the bento exited with {proc.returncode}:\n{srv.log_text()[-4000:]}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(srv.url + "/readyz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"not ready after 120 s:\n{srv.log_text()[-4000:]}"
            time.sleep(0.1)
        yield srv
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_bento_serves_http(served: Served) -> None:
    assert httpx.get(served.url + "/livez").status_code == 200
    image = (ROOT / "examples" / "ankle-boot.png").read_bytes()
    resp = httpx.post(served.url + "/predict", files={"image": ("ankle-boot.png", image, "image/png")}, timeout=30)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["label"] == "Ankle boot" and body["score"] > 0.9, body
    assert body["model"]["name"] == DEFAULT_MODEL and body["model"]["variant"] == "int8"


def test_bento_serves_oip_grpc(served: Served) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(served.grpc)
    try:
        assert client.is_server_ready()
        meta = client.get_model_metadata(DEFAULT_MODEL, as_json=True)
    finally:
        client.close()
    assert meta["name"] == DEFAULT_MODEL
    assert {t["name"] for t in meta["outputs"]} >= {"probabilities", "label"}

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(served.grpc) as channel:  # what a Kubernetes gRPC probe asks
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_bento_stops_cleanly_on_sigterm(served: Served) -> None:
    """Last in this module: SIGTERM to the process a container runs as PID 1 (``bentoml serve``), as
    ``docker stop`` and Kubernetes send it; every worker drains and exits, then the arbiter, with status 0."""
    t0 = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    try:
        code = served.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running 60 s after SIGTERM:\n{served.log_text()[-3000:]}")
    seconds = time.monotonic() - t0
    log = served.log_text()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-4000:]
    with pytest.raises(ProcessLookupError):  # no worker outlived the arbiter
        os.killpg(served.proc.pid, 0)
    print(f"bento exited {seconds:.1f} s after SIGTERM")
