"""The Open Inference Protocol's data plane over :class:`ModelRuntime`, shared by gRPC and REST (KServe style:
both front ends are thin wire adapters over this one class).

The served model speaks two inputs and two outputs, whatever its ONNX graph looks like:

* ``image``  BYTES ``[N]`` or ``[N, 1]``: encoded images (PNG, JPEG…), decoded and resized server side;
* ``input``  UINT8 ``[N, H, W, C]`` raw pixels at the model's size (or FP32, already normalised);
* ``probabilities`` FP32 ``[N, classes]`` and ``label`` BYTES ``[N]`` (the most likely class).

A request carries exactly one of the inputs. Errors are :class:`ImgServeError` subclasses; each adapter maps
them once to its status codes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.errors import ImgServeError, InvalidInput, NotFound, NotReady
from inference.session import OnnxClassifier
from inference.version import __version__

from .oip_codec import RequestedOutput, Tensor, bytes_tensor
from .oip_triton import (
    IMAGE_INPUT,
    LABEL_OUTPUT,
    PIXEL_INPUT,
    PLATFORM,
    PROBS_OUTPUT,
    model_config,
    triton_stats,
)
from .runtime import Classification, ModelRuntime

SERVER_NAME = "imgserve"
EXTENSIONS = ("binary_tensor_data", "classification")
OUTPUTS = (PROBS_OUTPUT, LABEL_OUTPUT)


@dataclass(frozen=True)
class InferResult:
    model_name: str
    model_version: str
    outputs: list[Tensor]
    id: str = ""


class OipDataPlane:
    """Health, metadata and inference in OIP terms. ``get_runtime`` is called per request, so the adapter
    can be built before the runtime exists (a BentoML service creates it at startup).

    Admission (the worker's one in-flight limit, shared with ``/predict``) is the runtime's:
    :meth:`ModelRuntime.admit`.
    """

    def __init__(self, get_runtime: Callable[[], ModelRuntime]):
        self._get_runtime = get_runtime

    @contextlib.contextmanager
    def admit(self, name: str | None = None, client: tuple[str | None, str | None] | None = None) -> Iterator[None]:
        """Hold one of the worker's in-flight slots (all transports share them) for the duration of a request;
        ``client`` is what the rate limit counts against (serving.ratelimit.client_key)."""
        with self.runtime.admit(name, client):
            yield

    @property
    def runtime(self) -> ModelRuntime:
        try:
            return self._get_runtime()
        except ImgServeError:
            raise
        except Exception as exc:  # e.g. the service has not built its runtime yet
            raise NotReady("the service is starting", retry_after=1.0) from exc

    # ---- health and metadata ----------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        try:
            return self.runtime.ready
        except NotReady:
            return False

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def resolve(self, name: str, version: str = "") -> OnnxClassifier:
        """The served model ``name`` (at ``version``, when given); NotFound otherwise, NotReady while loading."""
        slot = self.runtime.slot(name)
        if not version:
            return slot.pick()  # a canary takes its share of OIP requests too
        served = slot.served()
        for model in served:
            if version == str(model.card.version):
                return model
        raise NotFound(
            f"model '{name}' version '{version}' is not served; the served version is {served[0].card.version}"
        )

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.resolve(name, version)
        except NotReady:
            return False
        return True

    def model_metadata(self, name: str, version: str = "") -> dict[str, Any]:
        model = self.resolve(name, version)
        card = model.card
        h, w, c = card.preprocessing.shape
        return {
            "name": card.name,
            "versions": [str(card.version)],
            "platform": PLATFORM,
            "inputs": [
                {"name": IMAGE_INPUT, "datatype": "BYTES", "shape": [-1]},
                {"name": PIXEL_INPUT, "datatype": "UINT8", "shape": [-1, h, w, c]},
            ],
            "outputs": [
                {"name": PROBS_OUTPUT, "datatype": "FP32", "shape": [-1, card.num_classes]},
                {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            ],
        }

    def model_config(self, name: str, version: str = "") -> dict[str, Any]:
        """Triton's model configuration of the served version (see :func:`oip_triton.model_config`)."""
        model = self.resolve(name, version)
        runtime = self.runtime
        return model_config(model, runtime.slot(name).batcher.config, runtime.settings.max_batch_images)

    def model_statistics(self, name: str = "", version: str = "") -> dict[str, Any]:
        """Triton's ``ModelStatistics`` for every served model (or ``name``[/``version``]), summed over the
        worker processes: counts and cumulative nanoseconds from the batcher (queue: waiting for a lane;
        compute_infer: the ORT run of the request's batch; success/fail: from queueing to result)."""
        from .metrics import ServingMetrics

        runtime = self.runtime
        if name:
            served = {(name, str(self.resolve(name, version).card.version))}
        else:
            served = {(n, str(s.model.card.version)) for n, s in runtime.slots.items() if s.ready}
        counters = ServingMetrics.get().model_statistics()
        keys = served | {k for k in counters if (not name or k[0] == name) and (not version or k[1] == version)}
        return {"model_stats": [triton_stats(k, counters.get(k, {})) for k in sorted(keys)]}

    def repository_index(self, ready_only: bool = False) -> list[dict[str, Any]]:
        """Every model in the registry: served ones READY at their served version (LOADING before), the rest
        UNAVAILABLE."""
        runtime = self.runtime
        slots = runtime.slots
        index = []
        for name in sorted(set(runtime.registry.list_models()) | set(slots)):
            slot = slots.get(name)
            if slot is not None and slot.ready:
                index.append({"name": name, "version": str(slot.model.card.version), "state": "READY", "reason": ""})
            elif slot is not None:
                index.append({"name": name, "version": "", "state": "LOADING", "reason": slot.last_error or ""})
            else:
                index.append({"name": name, "version": "", "state": "UNAVAILABLE",
                              "reason": "in the registry, not served by this server (IMGSERVE_MODELS)"})
        return [m for m in index if m["state"] == "READY"] if ready_only else index

    # ---- inference --------------------------------------------------------------------------------
    async def infer(
        self,
        model: OnnxClassifier,
        inputs: Sequence[Tensor],
        outputs: Sequence[RequestedOutput] = (),
        *,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> InferResult:
        """Run one request on ``model`` (from :meth:`resolve`). Empty ``outputs`` = all outputs."""
        wanted = _check_outputs(outputs)
        tensor = self._check_input(model, inputs)
        runtime = self.runtime
        if tensor.name == IMAGE_INPUT:
            images = list(tensor.data.reshape(-1))
            result = await runtime.classify_images(images, name=model.card.name, timeout_s=timeout_s)
        elif tensor.datatype == "UINT8":
            result = await runtime.classify_pixels(tensor.data, model=model, timeout_s=timeout_s)
        else:
            result = await runtime.classify_tensor(tensor.data, model=model, timeout_s=timeout_s)
        return InferResult(
            model_name=result.card.name,
            model_version=str(result.card.version),
            outputs=[_output(result, out) for out in wanted],
            id=request_id,
        )

    def _check_input(self, model: OnnxClassifier, inputs: Sequence[Tensor]) -> Tensor:
        h, w, c = model.card.preprocessing.shape
        expected = f"'{IMAGE_INPUT}' (BYTES [N]) or '{PIXEL_INPUT}' (UINT8 [N, {h}, {w}, {c}])"
        if len(inputs) != 1:
            names = ", ".join(f"'{t.name}'" for t in inputs) or "none"
            raise InvalidInput(f"expected exactly one input, {expected}; got {names}")
        tensor = inputs[0]
        n = tensor.shape[0] if tensor.shape else 0
        limit = self.runtime.settings.max_batch_images
        if tensor.name == IMAGE_INPUT:
            if tensor.datatype != "BYTES":
                raise InvalidInput(
                    f"input '{IMAGE_INPUT}' must be BYTES (encoded images), got {tensor.datatype}"
                )
            if len(tensor.shape) not in (1, 2) or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
                raise InvalidInput(
                    f"input '{IMAGE_INPUT}' must be shaped [N] or [N, 1], got {list(tensor.shape)}"
                )
        elif tensor.name == PIXEL_INPUT:
            if tensor.datatype not in ("UINT8", "FP32"):
                raise InvalidInput(
                    f"input '{PIXEL_INPUT}' must be UINT8 pixels (or FP32, normalised), got {tensor.datatype}"
                )
            if len(tensor.shape) != 4 or tensor.shape[1:] != (h, w, c):
                raise InvalidInput(
                    f"input '{PIXEL_INPUT}' must be shaped [N, {h}, {w}, {c}], got {list(tensor.shape)}"
                )
        else:
            raise InvalidInput(f"unknown input '{tensor.name}'; expected {expected}")
        if n < 1:
            raise InvalidInput(f"input '{tensor.name}' holds no rows")
        if n > limit:
            raise InvalidInput(f"input '{tensor.name}' holds {n} rows; the limit is {limit} per request")
        return tensor


def _check_outputs(outputs: Sequence[RequestedOutput]) -> list[RequestedOutput]:
    if not outputs:
        return [RequestedOutput(name) for name in OUTPUTS]
    seen: set[str] = set()
    for out in outputs:
        if out.name not in OUTPUTS:
            raise InvalidInput(
                f"unknown output '{out.name}'; this model has {', '.join(repr(o) for o in OUTPUTS)}"
            )
        if out.name in seen:
            raise InvalidInput(f"output '{out.name}' is requested twice")
        if out.classification < 0:
            raise InvalidInput(f"output '{out.name}': classification must be >= 0, got {out.classification}")
        seen.add(out.name)
    return list(outputs)


def _output(result: Classification, out: RequestedOutput) -> Tensor:
    probs = result.probabilities
    if out.classification:  # classification extension: top-k "score:index:label" per row
        k = min(out.classification, probs.shape[1])
        labels = result.card.labels
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        values = [f"{row[j]:.6f}:{j}:{labels[j]}" for row, idx in zip(probs, order, strict=True) for j in idx]
        return bytes_tensor(out.name, values, (probs.shape[0], k))
    if out.name == PROBS_OUTPUT:
        data = np.ascontiguousarray(probs, dtype=np.float32)
        return Tensor(PROBS_OUTPUT, "FP32", tuple(data.shape), data)
    return bytes_tensor(LABEL_OUTPUT, result.labels())
