"""``python -m benchmarks.registry_store``: what the s3:// registry costs, against a local moto_server process.

Measures boto3's import and client set-up (paid once per process, only for s3:// registries), the alias poll
(one HEAD), a promote (GET + conditional PUT), publishing a version, and fetching a model file: first time
(download + SHA-256 check) and again (cached; re-hashed only if the file changed). Loopback to moto, so the
figures are the client's own cost plus moto's; a real store adds its network round trips (~10-30 ms each).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def main() -> int:
    from inference.registry_copy import copy_registry
    from tests.fixtures import register_tiny
    from tests.s3server import running_s3_server

    with tempfile.TemporaryDirectory() as tmp, running_s3_server(Path(tmp) / "moto.log") as server:
        os.environ.update(server.env())
        t0 = time.perf_counter()
        import boto3  # noqa: F401

        import_ms = 1e3 * (time.perf_counter() - t0)
        from inference.registry import Registry

        bucket = server.new_bucket()
        registry = Registry(f"s3://{bucket}/bench", cache_dir=Path(tmp) / "cache")
        t0 = time.perf_counter()
        registry.aliases_tag("none")  # first call creates the client
        client_ms = 1e3 * (time.perf_counter() - t0)
        publish_ms = _median_ms(lambda: register_tiny(registry), 5)
        poll_ms = _median_ms(lambda: registry.aliases_tag("tiny"), 50)
        promote_ms = _median_ms(lambda: registry.promote("tiny", 2), 20)
        t0 = time.perf_counter()
        copy_registry(Registry(ROOT / "models"), registry, "fashion-mnist")  # the shipped default model
        copy_ms = 1e3 * (time.perf_counter() - t0)

        def cold() -> Path:
            fresh = Registry(registry.root, cache_dir=Path(tempfile.mkdtemp(dir=tmp)))
            fresh.storage._client = registry.storage._client  # type: ignore[attr-defined]  # the client set-up is measured above
            return fresh.model_file("fashion-mnist", 1, "int8")

        size = cold().stat().st_size
        cold_ms = _median_ms(cold, 5)
        cached_ms = _median_ms(lambda: registry.model_file("fashion-mnist", 1, "int8"), 50)
        path = registry.model_file("fashion-mnist", 1, "int8")
        path.touch()  # a changed mtime: the next fetch re-hashes the file
        rehash_ms = _median_ms(lambda: (path.touch(), registry.model_file("fashion-mnist", 1, "int8")), 10)
    rows = [
        ("import boto3", import_ms), ("first call (client set-up)", client_ms), ("alias poll (HEAD)", poll_ms),
        ("promote (GET + HEAD + conditional PUT)", promote_ms), ("publish a tiny version (claim, 4 files, manifest)", publish_ms),
        ("`models copy` of fashion-mnist v1 (4 files, 4.3 MB)", copy_ms),
        (f"fetch model.int8.onnx ({size / 1e6:.1f} MB), cold cache: manifest + download + SHA-256", cold_ms),
        ("fetch it again, cached and unchanged (stat only)", cached_ms), ("fetch it again after its mtime changed (re-hash)", rehash_ms),
    ]
    print("| operation | median ms |\n|---|---:|")
    for label, ms in rows:
        print(f"| {label} | {ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
