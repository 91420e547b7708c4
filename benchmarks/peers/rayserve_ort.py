"""Peer: Ray Serve with ``@serve.batch`` (dynamic batching inside each replica).

Knobs: a local Ray instance limited to ``num_cpus=<cores>`` (no dashboard, 256 MB object store), Serve's
HTTP proxy on ``--port``, ``--workers`` replicas (default one per core, ``num_cpus=1`` each), each with its
own ORT session of ``--intra-op-threads`` (default 1). ``@serve.batch(max_batch_size=32,
batch_wait_timeout_s=0.002)``; ``max_ongoing_requests=64`` per replica (Serve's default of 5 would cap every
batch at 5); queue unbounded (``max_queued_requests=-1``, the default). A replica decodes each request in
a thread (so decoding overlaps the batch running in ORT), then awaits its batch. Ray's own processes (GCS,
raylet, controller, proxy) share the same cores: that overhead is part of what is measured.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Any

import numpy as np

from .common import cpus, decode_to_pixels, load_classifier, model_info, peer_parser, predictions, to_input


def build_app(args: Any) -> Any:
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(
        num_replicas=args.workers,
        ray_actor_options={"num_cpus": 1},
        max_ongoing_requests=64,
    )
    class OnnxClassifierDeployment:
        def __init__(self) -> None:
            self.classifier = load_classifier(
                args.models_dir, args.model, args.version, args.variant, args.intra_op_threads
            )
            self.card = self.classifier.card

        @serve.batch(max_batch_size=args.max_batch_size, batch_wait_timeout_s=args.batch_timeout_ms / 1e3)
        async def infer(self, pixels: list[np.ndarray]) -> list[dict[str, Any]]:
            probs = await asyncio.to_thread(lambda: self.classifier.predict(to_input(np.stack(pixels), self.card)))
            return predictions(probs, self.card)

        async def __call__(self, request: Request) -> Any:
            if request.method == "GET":
                if request.url.path.endswith("/model"):
                    return JSONResponse(model_info(self.classifier))
                return JSONResponse({"status": "ready"})
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                form = await request.form()
                data = await form["image"].read()
            else:
                data = await request.body()
            try:
                pixels = await asyncio.to_thread(decode_to_pixels, data, self.card)
            except Exception as exc:  # InvalidInput and friends: a client error, not a 500
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(await self.infer(pixels))

    return OnnxClassifierDeployment.bind()


def main() -> None:
    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    import ray
    from ray import serve

    ray.init(
        num_cpus=cpus(), include_dashboard=False, object_store_memory=256 << 20, log_to_driver=False,
        configure_logging=True, logging_level="warning",
    )
    serve.start(http_options={"host": args.host, "port": args.port}, logging_config={"log_level": "WARNING",
                                                                                       "enable_access_log": False})
    serve.run(build_app(args), name="imgserve-peer", route_prefix="/", blocking=False)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print("ray serve peer ready", flush=True)
    stop.wait()
    ray.shutdown()  # takes the replicas, proxy and controller with it; serve.shutdown() first adds ~10 s


if __name__ == "__main__":
    main()
