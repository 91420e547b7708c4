"""The tiny model served over OIP (gRPC + REST, tests/integration/oip_harness.py) for test_oip_metadata.py,
test_oip_inference.py and test_oip_errors.py, with an unmodified tritonclient client for each protocol.

Module scope: each of those modules gets its own in-process server on free ports (it starts in well under a
second), so no module sees another's traffic. Modules that need a server of their own (test_oip_triton.py,
test_multi_model.py) define their own ``served``, which takes precedence over this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from inference.registry import Registry
from serving.settings import ServeSettings
from tests.fixtures import register_tiny
from tests.integration.oip_harness import OipTestServer


def _settings(root: Path, **kw: object) -> ServeSettings:
    base: dict[str, object] = dict(
        models_dir=root, model="tiny", lanes=2, decode_threads=2, poll_interval_s=0, max_batch_images=16
    )
    return ServeSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OipTestServer]:
    root = tmp_path_factory.mktemp("models")
    register_tiny(Registry(root))
    server = OipTestServer(_settings(root)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def grpc_client(served: OipTestServer) -> Iterator[grpcclient.InferenceServerClient]:
    client = grpcclient.InferenceServerClient(served.grpc_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(served: OipTestServer) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(served.http_url)
    yield client
    client.close()
