"""The in-process limit: how many images per second this machine can classify with no server at all,
using exactly the serving code path (``decode_image`` with JPEG draft -> ``image_to_pixels`` ->
``normalize`` -> ``OnnxClassifier.predict``). A server's throughput divided by this is its efficiency.

Measured the two ways that can win on a few cores, and the best is the limit:

- ``loop_batch{B}``: one thread decodes B images, then one ORT run on the batch with ``cpus`` intra-op threads.
- ``pipelines_b{B}``: one decode+infer pipeline per core (threads: Pillow and ORT release the GIL), each with
  its own single-threaded ORT session, batches of B (1 = no batching at all).

Plus ORT alone on pre-decoded, pre-normalised inputs at batch 1 and 32 (``cpus`` intra-op threads): the
ceiling if decoding were free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.imagecodec import DEFAULT_LIMITS, decode_image
from inference.metadata import ModelCard
from inference.preprocess import image_to_pixels, normalize
from inference.session import OnnxClassifier, SessionOptions


def _decode(data: bytes, card: ModelCard) -> np.ndarray:
    spec = card.preprocessing
    image = decode_image(data, DEFAULT_LIMITS, draft=(spec.pil_mode, (spec.width, spec.height)))
    return image_to_pixels(image, spec)


def _timed(fn: Callable[[float], int], duration_s: float) -> float:
    """Run ``fn(deadline)`` (returns images done) once briefly to warm up, then for ``duration_s``; images/s."""
    fn(time.perf_counter() + min(0.2, duration_s / 4))
    t0 = time.perf_counter()
    n = fn(t0 + duration_s)
    return n / (time.perf_counter() - t0)


def loop_batch(model: OnnxClassifier, images: Sequence[bytes], batch: int, duration_s: float) -> float:
    card = model.card

    def run(deadline: float) -> int:
        done, i = 0, 0
        while time.perf_counter() < deadline:
            pixels = np.stack([_decode(images[(i + k) % len(images)], card) for k in range(batch)])
            model.predict(normalize(pixels, card.preprocessing))
            done += batch
            i += batch
        return done

    return _timed(run, duration_s)


def pipelines(models: Sequence[OnnxClassifier], images: Sequence[bytes], batch: int, duration_s: float) -> float:
    card = models[0].card

    def run(deadline: float) -> int:
        counts = [0] * len(models)

        def one(idx: int) -> None:
            model, i = models[idx], idx * 7
            while time.perf_counter() < deadline:
                pixels = np.stack([_decode(images[(i + k) % len(images)], card) for k in range(batch)])
                model.predict(normalize(pixels, card.preprocessing))
                counts[idx] += batch
                i += batch

        threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(len(models))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts)

    return _timed(run, duration_s)


def ort_alone(model: OnnxClassifier, images: Sequence[bytes], batch: int, duration_s: float) -> float:
    card = model.card
    pixels = np.stack([_decode(images[k % len(images)], card) for k in range(batch)])
    x = normalize(pixels, card.preprocessing)

    def run(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            model.predict(x)
            done += batch
        return done

    return _timed(run, duration_s)


def measure(
    model_path: Path, card: ModelCard, variant: str, images: Sequence[bytes], *, cpus: int, duration_s: float,
    batch: int = 32,
) -> dict[str, Any]:
    """All in-process numbers for one model file, images/s; ``limit`` is the best decode-included one."""
    wide = OnnxClassifier.load(model_path, card, variant, SessionOptions(intra_op_threads=cpus))
    singles = [OnnxClassifier.load(model_path, card, variant, SessionOptions(intra_op_threads=1)) for _ in range(cpus)]
    for m in (wide, *singles):
        m.warmup((1, batch))
    small = min(8, batch)
    methods = {
        f"loop_batch{batch}": lambda: loop_batch(wide, images, batch, duration_s),
        "pipelines_b1": lambda: pipelines(singles, images, 1, duration_s),
        f"pipelines_b{small}": lambda: pipelines(singles, images, small, duration_s),
        "ort_alone_b1": lambda: ort_alone(wide, images, 1, duration_s),
        f"ort_alone_b{batch}": lambda: ort_alone(wide, images, batch, duration_s),
    }
    results = {name: round(fn(), 1) for name, fn in methods.items()}
    with_decode = {k: v for k, v in results.items() if not k.startswith("ort_alone")}
    best = max(with_decode, key=with_decode.__getitem__)
    return {
        "images_per_s": results,
        "limit": with_decode[best],
        "best": best,
        "cpus": cpus,
        "duration_s": duration_s,
        "model_file": model_path.name,
    }
