"""Peer: MLServer with a custom ONNX runtime (MLServer ships none) and its adaptive batching.

Knobs: the MLServer main process (REST on ``--port``, gRPC on ``--grpc-port``, no metrics server) batches
requests (``max_batch_size`` 32, ``max_batch_time`` = ``--batch-timeout-ms`` 2 ms) and hands each batch to
one of ``--workers`` inference worker processes (``parallel_workers``, default one per core), each with its
own ORT session of ``--intra-op-threads`` (default 1). MLServer runs several batches at once (one task per
batch), so workers are not left idle. Clients speak the Open Inference Protocol: gRPC ``ModelInfer`` with
one BYTES ``image`` element (raw_input_contents), or REST ``/v2/models/<name>/infer`` with the image
base64-encoded in JSON (``"parameters": {"content_type": "base64"}``). Outputs: ``probabilities`` (FP32)
and ``label`` (BYTES), like imgserve's OIP endpoints.

MLServer pins older fastapi/starlette/opentelemetry than BentoML, so it lives in its own virtualenv
(``benchmarks/.venvs/mlserver``, see docs/benchmarks.md); this script runs under that interpreter and finds
the ``inference`` package through ``PYTHONPATH``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

from .common import decode_to_pixels, load_classifier, peer_parser, to_input


class OnnxImageRuntime(MLModel):
    """``load`` builds the ORT session in the worker; ``predict`` gets the merged batch of encoded images."""

    async def load(self) -> bool:
        extra = self.settings.parameters.extra or {}
        self.classifier = load_classifier(
            Path(extra["models_dir"]), extra["model"], str(extra.get("version", "production")),
            extra.get("variant", "int8"), int(extra.get("intra_op_threads", 1)),
        )
        self.card = self.classifier.card
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        images = [_as_bytes(x, payload.inputs[0]) for x in _elements(payload.inputs[0].data)]
        pixels = np.stack([decode_to_pixels(d, self.card) for d in images])
        probs = self.classifier.predict(to_input(pixels, self.card))
        labels = [self.card.labels[i] for i in probs.argmax(axis=1)]
        return InferenceResponse(
            model_name=self.name,
            model_version=str(self.card.version),
            outputs=[
                ResponseOutput(name="probabilities", shape=list(probs.shape), datatype="FP32",
                               data=probs.ravel().tolist()),
                ResponseOutput(name="label", shape=[len(labels)], datatype="BYTES", data=labels),
            ],
        )


def _elements(data: Any) -> list[Any]:
    root = getattr(data, "root", data)
    root = getattr(root, "__root__", root)
    return list(root) if isinstance(root, list | tuple) else [root]


def _as_bytes(item: Any, inp: Any) -> bytes:
    params = inp.parameters.model_dump() if inp.parameters is not None else {}
    if isinstance(item, str):
        return base64.b64decode(item) if params.get("content_type") == "base64" else item.encode("latin-1")
    if params.get("content_type") == "base64" and isinstance(item, bytes):
        return base64.b64decode(item)
    return bytes(item)


def write_config(args: Any, folder: Path) -> Path:
    """MLServer's two config files: server settings and one model's settings."""
    (folder / "settings.json").write_text(json.dumps({
        "host": args.host, "http_port": args.port, "grpc_port": args.grpc_port, "metrics_port": 0,
        "metrics_endpoint": None, "parallel_workers": args.workers, "debug": False,
        "load_models_at_startup": True, "logging_level": "WARNING",
    }))
    model_dir = folder / args.model
    model_dir.mkdir()
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": args.model,
        "implementation": "benchmarks.peers.mlserver_ort.OnnxImageRuntime",
        "max_batch_size": args.max_batch_size,
        "max_batch_time": args.batch_timeout_ms / 1e3,
        "parameters": {"extra": {
            "models_dir": str(Path(args.models_dir).resolve()), "model": args.model, "version": args.version,
            "variant": args.variant, "intra_op_threads": args.intra_op_threads,
        }},
    }))
    return folder


def main() -> None:
    p = peer_parser(__doc__.splitlines()[0])
    p.add_argument("--grpc-port", type=int, required=True)
    args = p.parse_args()
    # One folder per port, replaced on each start (mlserver is exec'd below, so nothing could clean up after it).
    folder = Path(tempfile.gettempdir()) / f"imgserve-mlserver-{args.port}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_config(args, folder)
    mlserver = Path(sys.executable).with_name("mlserver")
    os.execv(str(mlserver), [str(mlserver), "start", str(folder)])


if __name__ == "__main__":
    main()
