"""The one runtime class: an ONNX Runtime session for a registered classifier."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .errors import ConfigError, InvalidInput, RegistryError
from .metadata import ModelCard
from .preprocess import model_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionOptions:
    """ORT threading. One intra-op thread per session and several sessions (or lanes) in parallel is
    usually fastest for small CNNs on few cores; spinning threads burn CPU that the other lanes need."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False
    graph_optimization: str = "all"  # disable | basic | extended | all
    # ONNX Runtime execution providers in order of preference (IMGSERVE_PROVIDERS); check_providers() names the
    # installed ones when one is missing, instead of ORT's silent fallback to the CPU.
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def build(self) -> ort.SessionOptions:
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(0, int(self.intra_op_threads))
        so.inter_op_num_threads = max(0, int(self.inter_op_threads))
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization]
        spin = "1" if self.allow_spinning else "0"
        so.add_session_config_entry("session.intra_op.allow_spinning", spin)
        so.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return so


class OnnxClassifier:
    """A loaded model: ``predict(float32 batch in the model's layout) -> probabilities``. Thread-safe (ORT
    ``run`` is). Models that output logits (``export.outputs_probabilities`` false) get a softmax here."""

    def __init__(self, session: ort.InferenceSession, card: ModelCard, variant: str, path: Path):
        self.session = session
        self.card = card
        self.variant = variant
        self.path = path
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name
        shape = session.get_inputs()[0].shape
        expected = card.preprocessing.input_shape
        fixed = tuple(d if isinstance(d, int) else -1 for d in shape[1:])
        if len(fixed) != 3 or any(f not in (-1, e) for f, e in zip(fixed, expected, strict=True)):
            raise RegistryError(
                f"model input shape {list(shape)} does not match metadata preprocessing {list(expected)}"
            )
        self._outputs_softmax = bool(card.export.get("outputs_probabilities", True))
        self.provider = session.get_providers()[0]  # the one that runs the graph (others only take what it cannot)
        self.max_batch: int | None = None  # the batcher's cap for this model, if measured (efficient_batch)

    @classmethod
    def load(
        cls, path: str | Path, card: ModelCard, variant: str = "fp32", options: SessionOptions | None = None
    ) -> OnnxClassifier:
        path = Path(path)
        if not path.is_file():
            raise RegistryError(f"model file for variant {variant!r} of {card.name} v{card.version} is missing")
        t0 = time.perf_counter()
        options = options or SessionOptions()
        session = ort.InferenceSession(
            str(path), sess_options=options.build(), providers=list(check_providers(options.providers))
        )
        model = cls(session, card, variant, path)
        log.info("loaded %s v%s (%s) in %.0f ms", card.name, card.version, variant, 1e3 * (time.perf_counter() - t0))
        return model

    @property
    def label(self) -> str:
        return f"{self.card.name}:{self.card.version}:{self.variant}"

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 batch (already normalised, in the model's layout) -> float32 probabilities [N, C]."""
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        (out,) = self.session.run([self.output_name], {self.input_name: batch})
        out = np.asarray(out, dtype=np.float32)
        if not self._outputs_softmax:
            out = softmax(out)
        return out

    def predict_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 NHWC pixels (already resized) -> probabilities."""
        if pixels.dtype != np.uint8:
            raise InvalidInput(f"pixels must be uint8, got {pixels.dtype}")
        return self.predict(model_input(pixels, self.card.preprocessing))

    def warmup(self, batch_sizes: tuple[int, ...] = (1, 2, 8)) -> None:
        """Run a few dummy batches so the first real request does not pay for lazy initialisation."""
        shape = self.card.preprocessing.input_shape
        for n in batch_sizes:
            self.predict(np.zeros((n, *shape), dtype=np.float32))


    def efficient_batch(self, limit: int, *, tolerance: float = 1.1, budget_s: float = 1.0) -> int:
        """The largest batch (1, 2, 4, ... up to ``limit``) whose time per row is within ``tolerance`` of the
        best time per row measured, on this session's threads. Batching amortises ORT's per-run overhead, which
        dominates for small models (a 28x28 CNN runs ~1.5x cheaper per row at 32 than at 1), but large CNNs can run
        *slower* per row in big batches, their activations no longer fitting in cache: MobileNetV2 INT8 took 2.4
        ms/row at batch 1-4, 2.9 at 16 and 3.2 at 32 on an AVX-512 VNNI CPU, and 8.7, 6.3 and 7.0 at 1, 16 and 32 on
        an AVX2 one, so it is measured where it runs. Stops at the first size slower than the tolerance
        allows (so ORT's arena never grows for sizes that will not be used) or once ``budget_s`` is spent."""
        shape = self.card.preprocessing.input_shape
        sizes = [1]
        while sizes[-1] < limit:
            sizes.append(min(2 * sizes[-1], limit))
        best, chosen, spent = math.inf, 1, 0.0
        for n in sizes:
            if spent > budget_s:
                break
            x = np.zeros((n, *shape), dtype=np.float32)
            times: list[float] = []
            while len(times) < 2 or (sum(times) < 0.005 and len(times) < 50):  # the best of a few runs: the
                t0 = time.perf_counter()  # first of a new shape pays for planning, tiny ones are noisy
                self.predict(x)
                times.append(time.perf_counter() - t0)
            spent += sum(times)
            per_row = min(times) / n
            if per_row > tolerance * best:
                break
            best, chosen = min(best, per_row), n
        return chosen


def check_providers(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Full ORT provider names for ``names`` (``CUDA`` or ``CUDAExecutionProvider``, any case); a ConfigError
    naming what this onnxruntime build has when one is not available."""
    available = ort.get_available_providers()
    by_key = {p.lower().removesuffix("executionprovider"): p for p in available}
    resolved = []
    for name in names:
        key = name.strip().lower().removesuffix("executionprovider")
        if key not in by_key:
            raise ConfigError(
                f"execution provider {name.strip()!r} is not available in this onnxruntime {ort.__version__} "
                f"(installed: {', '.join(available)}); install the matching package (e.g. onnxruntime-gpu for CUDA "
                "and TensorRT, onnxruntime-openvino) or change IMGSERVE_PROVIDERS"
            )
        resolved.append(by_key[key])
    if not resolved:
        raise ConfigError(f"IMGSERVE_PROVIDERS names no provider (installed: {', '.join(available)})")
    return tuple(dict.fromkeys(resolved))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, labels: tuple[str, ...], k: int) -> list[list[dict[str, float | str]]]:
    """Per row, the ``k`` most likely labels with scores, best first."""
    k = max(1, min(int(k), probs.shape[-1]))
    idx = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [[{"label": labels[j], "score": float(row[j])} for j in order] for row, order in zip(probs, idx, strict=True)]
