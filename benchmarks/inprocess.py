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

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.imagecodec import DEFAULT_LIMITS, decode_image
from inference.metadata import ModelCard
from inference.preprocess import image_to_pixels, model_input
from inference.session import OnnxClassifier, SessionOptions


def _decode(data: bytes, card: ModelCard) -> np.ndarray:
    spec = card.preprocessing
    image = decode_image(data, DEFAULT_LIMITS, draft=(spec.pil_mode, (spec.width, spec.height)))
    return image_to_pixels(image, spec)


MIN_STEPS = 3  # a rate from one or two batches of a slow model is mostly noise
CAP_FACTOR = 5  # ...but never run longer than this many times the asked duration


def _rate(step: Callable[[], int], duration_s: float) -> float:
    """Images/s of ``step`` (one unit of work, returns images done): one warm-up step, then steps until
    ``duration_s`` has passed and at least ``MIN_STEPS`` ran (capped at ``CAP_FACTOR * duration_s``)."""
    step()
    t0 = time.perf_counter()
    done = steps = 0
    while True:
        done += step()
        steps += 1
        elapsed = time.perf_counter() - t0
        if (elapsed >= duration_s and steps >= MIN_STEPS) or elapsed >= CAP_FACTOR * duration_s:
            return done / elapsed


def _batch_step(model: OnnxClassifier, images: Sequence[bytes], batch: int, start: int = 0) -> Callable[[], int]:
    card, pos = model.card, [start]

    def step() -> int:
        i = pos[0]
        pixels = np.stack([_decode(images[(i + k) % len(images)], card) for k in range(batch)])
        model.predict(model_input(pixels, card.preprocessing))
        pos[0] += batch
        return batch

    return step


def loop_batch(model: OnnxClassifier, images: Sequence[bytes], batch: int, duration_s: float) -> float:
    return _rate(_batch_step(model, images, batch), duration_s)


def pipelines(models: Sequence[OnnxClassifier], images: Sequence[bytes], batch: int, duration_s: float) -> float:
    """All pipelines run at once; the rate is their total images over the longest one's time."""
    results: list[tuple[int, float]] = []
    barrier = threading.Barrier(len(models))

    def one(idx: int) -> None:
        step = _batch_step(models[idx], images, batch, start=idx * 7)
        step()  # warm-up
        barrier.wait()
        t0 = time.perf_counter()
        done = steps = 0
        while True:
            done += step()
            steps += 1
            elapsed = time.perf_counter() - t0
            if (elapsed >= duration_s and steps >= MIN_STEPS) or elapsed >= CAP_FACTOR * duration_s:
                results.append((done, elapsed))
                return

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(d for d, _ in results) / max(e for _, e in results)


def ort_alone(model: OnnxClassifier, images: Sequence[bytes], batch: int, duration_s: float) -> float:
    card = model.card
    pixels = np.stack([_decode(images[k % len(images)], card) for k in range(batch)])
    x = model_input(pixels, card.preprocessing)

    def step() -> int:
        model.predict(x)
        return batch

    return _rate(step, duration_s)


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
    return {**_with_limit(results), "cpus": cpus, "duration_s": duration_s, "model_file": model_path.name}


def _with_limit(images_per_s: dict[str, float]) -> dict[str, Any]:
    with_decode = {k: v for k, v in images_per_s.items() if not k.startswith("ort_alone")}
    best = max(with_decode, key=with_decode.__getitem__)
    return {"images_per_s": images_per_s, "limit": with_decode[best], "best": best}


def merge_rounds(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The in-process figures of several rounds of :func:`measure` (the suite measures once per round of
    its sweep, between the servers' points): each method's median, the limit from those, and each round's
    own limit (``limit_rounds``) so the report can show how far the machine drifted during the run."""
    medians = {m: round(statistics.median(r["images_per_s"][m] for r in rounds), 1) for m in rounds[0]["images_per_s"]}
    return {**rounds[0], **_with_limit(medians), "limit_rounds": [r["limit"] for r in rounds]}
