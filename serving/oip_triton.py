"""Triton's own extensions of the Open Inference Protocol, in the JSON form Triton's REST API uses (gRPC parses
the same dicts into tritonclient's protobufs): the model configuration and the per-model statistics.
One builder each, so REST and gRPC cannot disagree."""

from __future__ import annotations

import json
from typing import Any

from inference.batcher import BatchingConfig
from inference.session import OnnxClassifier

PLATFORM = "onnxruntime_onnx"
IMAGE_INPUT, PIXEL_INPUT = "image", "input"
PROBS_OUTPUT, LABEL_OUTPUT = "probabilities", "label"


def model_config(model: OnnxClassifier, batching: BatchingConfig, max_batch_size: int) -> dict[str, Any]:
    """``model_config.proto`` for the served version, from its card and the real batcher settings: what
    perf_analyzer and other Triton tooling read before sending anything. ``max_batch_size`` is the most rows one
    request may carry; ``dynamic_batching.preferred_batch_size`` the most the batcher runs at once."""
    card = model.card
    h, w, c = card.preprocessing.shape
    return {
        "name": card.name,
        "platform": PLATFORM,
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": [card.version]}},
        "max_batch_size": max_batch_size,
        "input": [  # a request sends exactly one of the two, so each is optional on its own
            {"name": IMAGE_INPUT, "data_type": "TYPE_STRING", "format": "FORMAT_NONE", "dims": [1], "optional": True},
            {"name": PIXEL_INPUT, "data_type": "TYPE_UINT8", "format": "FORMAT_NHWC", "dims": [h, w, c],
             "optional": True},
        ],
        "output": [
            {"name": PROBS_OUTPUT, "data_type": "TYPE_FP32", "dims": [card.num_classes]},
            {"name": LABEL_OUTPUT, "data_type": "TYPE_STRING", "dims": [1]},
        ],
        "dynamic_batching": {
            "preferred_batch_size": [min(model.max_batch or batching.max_batch_size, batching.max_batch_size)],
            "max_queue_delay_microseconds": round(batching.max_wait_ms * 1000),
            "default_queue_policy": {
                "timeout_action": "REJECT",
                "default_timeout_microseconds": round(batching.timeout_s * 1e6),
                "allow_timeout_override": True,
                "max_queue_size": batching.max_queue,
            },
        },
        "instance_group": [{"name": f"{card.name}_lanes", "kind": "KIND_CPU", "count": batching.lanes}],
        "default_model_filename": model.path.name,
        "parameters": {
            key: {"string_value": str(value)}
            for key, value in (
                ("variant", model.variant),
                ("layout", card.preprocessing.layout),
                ("labels", json.dumps(list(card.labels))),  # a JSON list: labels may hold commas
                ("execution_provider", model.provider),
            )
        },
    }


def triton_stats(key: tuple[str, str], c: dict[str, float]) -> dict[str, Any]:
    """One ``ModelStatistics`` entry from the counters :meth:`ServingMetrics.model_statistics` sums up. As in
    Triton, every successful request counts once in queue and compute_infer, with its own times."""
    def stat(count: float, seconds: float) -> dict[str, int]:
        return {"count": int(count), "ns": int(round(seconds * 1e9))}

    ok = c.get("success", 0.0)
    return {
        "name": key[0],
        "version": key[1],
        "last_inference": int(c.get("last_inference", 0.0) * 1000),  # milliseconds since the epoch
        "inference_count": int(c.get("inference_count", 0)),
        "execution_count": int(c.get("execution_count", 0)),
        "inference_stats": {
            "success": stat(ok, c.get("success_s", 0.0)),
            "fail": stat(c.get("fail", 0.0), c.get("fail_s", 0.0)),
            "queue": stat(ok, c.get("queue_s", 0.0)),
            "compute_input": stat(ok, 0.0),  # decoding and preprocessing happen before the queue
            "compute_infer": stat(ok, c.get("compute_s", 0.0)),
            "compute_output": stat(ok, 0.0),
            "cache_hit": stat(0, 0.0),
            "cache_miss": stat(0, 0.0),
        },
        "batch_stats": [],
    }
