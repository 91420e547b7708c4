"""What every peer shares: its command line, loading the model from the registry, and the one
preprocessing path (the same calls as ``serving.runtime``), so peers differ only in how they serve."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from inference.imagecodec import DEFAULT_LIMITS, decode_image
from inference.metadata import ModelCard
from inference.preprocess import image_to_pixels, model_input
from inference.registry import Registry
from inference.session import OnnxClassifier, SessionOptions, top_k

TOP_K = 5  # what imgserve returns by default; the peers do the same work per response


def cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def peer_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--models-dir", type=Path, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--version", default="production")
    p.add_argument("--variant", default="int8", choices=["int8", "fp32"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=cpus(), help="parallel inference lanes (threads/processes/replicas)")
    p.add_argument("--processes", type=int, default=1, help="front-end (HTTP server) processes, where the peer has them")
    p.add_argument("--intra-op-threads", type=int, default=1, help="ORT intra-op threads per session")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout-ms", type=float, default=2.0, help="how long a batch may wait to fill")
    return p


def load_classifier(models_dir: Path, model: str, version: str = "production", variant: str = "int8",
                    intra_op_threads: int = 1) -> OnnxClassifier:
    """The registered version, loaded and warmed exactly as imgserve's runtime does."""
    registry = Registry(models_dir)
    v = registry.resolve(model, version)
    card = registry.card(model, v)
    classifier = OnnxClassifier.load(
        registry.model_file(model, v, variant), card, variant, SessionOptions(intra_op_threads=intra_op_threads)
    )
    classifier.warmup()
    return classifier


def decode_to_pixels(data: bytes, card: ModelCard) -> np.ndarray:
    """Encoded image -> uint8 HxWxC at the model's size (JPEG draft decoding included), as imgserve does."""
    spec = card.preprocessing
    image = decode_image(data, DEFAULT_LIMITS, draft=(spec.pil_mode, (spec.width, spec.height)))
    return image_to_pixels(image, spec)


def to_input(pixels: np.ndarray, card: ModelCard) -> np.ndarray:
    return model_input(pixels, card.preprocessing)


def predictions(probs: np.ndarray, card: ModelCard) -> list[dict[str, Any]]:
    """Per row: the best label, its score and the top 5, like imgserve's /predict body."""
    return [{"label": row[0]["label"], "score": row[0]["score"], "top_k": row} for row in top_k(probs, card.labels, TOP_K)]


def model_info(classifier: OnnxClassifier) -> dict[str, Any]:
    card = classifier.card
    return {"name": card.name, "version": card.version, "variant": classifier.variant,
            "input": list(card.preprocessing.shape), "labels": list(card.labels)}


def quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
