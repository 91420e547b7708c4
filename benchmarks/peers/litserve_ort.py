"""Peer: LitServe with its own batching (``LitAPI(max_batch_size, batch_timeout)``, litserve >= 0.2.10).

Knobs: ``--processes`` API server processes (``num_api_servers``, uvicorn, no access log) + ``--workers`` inference worker
processes (``workers_per_device`` on one CPU "device", default one per core), each with its own ORT session of
``--intra-op-threads`` (default 1). A worker takes up to ``--max-batch-size`` (32) queued requests, waiting up to
``--batch-timeout-ms`` (2 ms) to fill a batch, decodes them one by one in ``decode_request`` (same code as
imgserve), then runs one ORT batch. ``batch_timeout=0`` is not used: LitServe then polls its queue with
``get_nowait`` in a tight loop, burning a core that the 2-core box does not have. No queue cap (timeout 30 s
-> 504).

Requests are multipart (field ``image``) like every other HTTP target; LitServe parses the form in its API
process and pickles it (the ``UploadFile`` kept in memory) to a worker. JSON ``{"image": "<base64>"}`` (its
examples' style) is accepted too. ``decode_request`` must be annotated with the real ``Request`` class (no
``from __future__ import annotations``), else LitServe hands over the raw request and fails to pickle it.
"""

# No `from __future__ import annotations`: LitServe reads decode_request's annotation object at run time.

import base64
from typing import Any

import litserve as ls
import numpy as np
from fastapi import Request

from .common import decode_to_pixels, load_classifier, peer_parser, predictions, quiet_logs, to_input


class OnnxImageAPI(ls.LitAPI):
    def __init__(self, models_dir: str, model: str, version: str, variant: str, intra_op_threads: int, **kw: Any):
        super().__init__(**kw)
        self._cfg = (models_dir, model, version, variant, intra_op_threads)

    def setup(self, device: str) -> None:
        self.classifier = load_classifier(*self._cfg)
        self.card = self.classifier.card

    def decode_request(self, request: Request) -> np.ndarray:  # Request: LitServe then parses the JSON body
        image = request["image"]
        if hasattr(image, "file"):  # multipart upload (starlette UploadFile, kept in memory by LitServe)
            return decode_to_pixels(image.file.read(), self.card)
        return decode_to_pixels(base64.b64decode(image), self.card)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 3:  # max_batch_size=1: no batch() call
            x = x[None]
        return self.classifier.predict(to_input(x, self.card))

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        if output.ndim == 1:
            output = output[None]
        return predictions(output, self.card)[0]


def main() -> None:
    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    quiet_logs()
    api = OnnxImageAPI(
        str(args.models_dir), args.model, args.version, args.variant, args.intra_op_threads,
        max_batch_size=args.max_batch_size, batch_timeout=args.batch_timeout_ms / 1e3, api_path="/predict",
    )
    server = ls.LitServer(api, accelerator="cpu", devices=1, workers_per_device=args.workers, timeout=30)
    server.run(host=args.host, port=args.port, num_api_servers=args.processes, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
