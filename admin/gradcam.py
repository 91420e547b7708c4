"""Grad-CAM heatmaps for the dashboard's "Try it" page, from a version's ``model.keras``.

Off the serving path and out of the admin runner's own process: TensorFlow is imported only inside
:func:`compute_cam`, which runs in one spawned worker process (:class:`GradCamWorker`). The admin process
stays TensorFlow-free and its event loop is never blocked; a worker that crashes is replaced on the next call.
The worker keeps the last two loaded models, keyed by path and modification time.

Grad-CAM (Selvaraju et al., 2017): weights = spatial mean of d(score of class c)/d(feature maps) of the last
convolutional layer; heatmap = ReLU(sum over channels of weights x feature maps), scaled to [0, 1].
Here "score" is the model's pre-softmax output for class c when it ends in a softmax (else its output).
When the Grad-CAM map has no positive value (position-specific heads such as Flatten + Dense, where the
channel-mean gradients cancel), the HiResCAM variant (gradients x feature maps per position) is returned
instead, and ``method`` says which one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from inference.errors import ImgServeError

log = logging.getLogger(__name__)


class GradCamUnavailable(ImgServeError):
    http_status = 501
    error_type = "gradcam_unavailable"


class KerasModelMissing(ImgServeError):
    http_status = 404
    grpc_code = "NOT_FOUND"
    error_type = "keras_model_missing"


# ---- worker side (TensorFlow) --------------------------------------------------------------------------
def _worker_init() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


@lru_cache(maxsize=2)
def _load(path: str, mtime_ns: int) -> Any:
    """(forward function returning (feature maps, outputs), explained layer's name, outputs are logits)."""
    import keras
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):  # already initialised in this worker
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    model = keras.saving.load_model(path, compile=False)
    layer = _last_conv_layer(model)
    logits = _use_logits(model)
    if isinstance(model, keras.Sequential):
        # A loaded Sequential's layer outputs are not wired to its outputs: run the layers one by one.
        def forward(x: Any) -> tuple[Any, Any]:
            maps = None
            for lyr in model.layers:
                x = lyr(x, training=False)
                if lyr is layer:
                    maps = x
            return maps, x
    else:
        graph = keras.Model(model.inputs, [layer.output, model.outputs[0]])

        def forward(x: Any) -> tuple[Any, Any]:
            maps, out = graph(x, training=False)
            return maps, out
    return forward, layer.name, logits


def _last_conv_layer(model: Any) -> Any:
    """The last convolution with a 4-D output (else the last layer with one, e.g. a nested backbone)."""
    spatial = []
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4:
            spatial.append(layer)
    if not spatial:
        raise ValueError("the model has no layer with a 4-D (image-like) output to explain")
    convs = [lyr for lyr in spatial if "conv" in type(lyr).__name__.lower()]
    return (convs or spatial)[-1]


def _use_logits(model: Any) -> bool:
    """Explain the pre-softmax score: a saturated softmax has (near) zero gradients. The worker owns its
    copy of the model, so switching the last layer's activation off changes nothing anywhere else."""
    import keras

    last = model.layers[-1]
    act = getattr(last, "activation", None)
    if act is not None and getattr(act, "__name__", "") == "softmax":
        last.activation = keras.activations.linear
        return True
    return False


def compute_cam(keras_path: str, x: np.ndarray, class_index: int | None = None) -> dict[str, Any]:
    """float32 NHWC input (one image, already preprocessed) -> heatmap [h, w] in [0, 1] and the probabilities."""
    import tensorflow as tf

    forward, layer_name, logits = _load(keras_path, os.stat(keras_path).st_mtime_ns)
    inputs = tf.convert_to_tensor(x[:1], dtype=tf.float32)
    with tf.GradientTape() as tape:
        feature_maps, outputs = forward(inputs)
        scores = outputs[0]
        probs = tf.nn.softmax(scores) if logits else scores
        index = int(tf.argmax(probs)) if class_index is None else int(class_index)
        if not 0 <= index < int(probs.shape[-1]):
            raise ValueError(f"class index {index} is out of range (0..{int(probs.shape[-1]) - 1})")
        score = scores[index]
    grads = tape.gradient(score, feature_maps)
    weights = tf.reduce_mean(grads, axis=(0, 1, 2))
    cam = tf.nn.relu(tf.reduce_sum(feature_maps[0] * weights, axis=-1)).numpy().astype(np.float32)
    method = "grad-cam"
    if not cam.size or float(cam.max()) <= 0:
        # Nothing positive: happens with position-specific heads (Flatten + Dense), where channel-mean
        # gradients cancel out. HiResCAM (gradients x activations per position) is faithful there.
        cam = tf.nn.relu(tf.reduce_sum(feature_maps[0] * grads[0], axis=-1)).numpy().astype(np.float32)
        method = "hirescam"
    peak = float(cam.max()) if cam.size else 0.0
    cam = cam / peak if peak > 0 else cam
    return {"cam": cam, "probabilities": probs.numpy().astype(np.float32), "class_index": index,
            "layer": layer_name, "method": method}


# ---- admin side (numpy + Pillow) ----------------------------------------------------------------------
class GradCamWorker:
    """One lazily started worker process; calls are awaited without blocking the event loop."""

    def __init__(self, timeout_s: float = 180.0):
        self.timeout_s = timeout_s
        self._pool: ProcessPoolExecutor | None = None
        self._lock = asyncio.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
            )
        return self._pool

    async def explain(self, keras_path: str, x: np.ndarray, class_index: int | None = None) -> dict[str, Any]:
        async with self._lock:  # one at a time: the worker is single-threaded anyway
            loop = asyncio.get_running_loop()
            try:
                fut = loop.run_in_executor(self._executor(), compute_cam, keras_path, x, class_index)
                return await asyncio.wait_for(fut, self.timeout_s)
            except ModuleNotFoundError as exc:
                raise GradCamUnavailable(
                    f"Grad-CAM needs TensorFlow/Keras in the admin runner's environment ({exc}): "
                    "install the 'train' extra"
                ) from None
            except BrokenProcessPool:
                self.shutdown()
                raise GradCamUnavailable("the Grad-CAM worker process died; try again") from None
            except TimeoutError:
                self.shutdown()
                raise GradCamUnavailable(f"Grad-CAM took longer than {self.timeout_s:.0f} s") from None
            except Exception as exc:  # a model Keras cannot load or explain: say why, keep the worker
                log.warning("Grad-CAM of %s failed: %r", keras_path, exc)
                detail = str(exc).replace(keras_path, os.path.basename(keras_path))[:300]  # no server paths
                raise GradCamUnavailable(f"cannot explain this model: {type(exc).__name__}: {detail}") from None

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


# Anchors of a perceptually ordered "turbo"-like colour map: low = dark blue, high = dark red.
_ANCHORS = np.array(
    [[48, 18, 59], [70, 107, 227], [41, 187, 236], [49, 242, 153], [164, 252, 60],
     [238, 207, 58], [250, 124, 37], [205, 45, 5], [122, 4, 3]], dtype=np.float32,
)


def colormap(values: np.ndarray) -> np.ndarray:
    """[h, w] in [0, 1] -> uint8 RGB [h, w, 3]."""
    v = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(int)
    hi = np.minimum(lo + 1, len(_ANCHORS) - 1)
    frac = (v - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[hi] * frac).astype(np.uint8)


def overlay(image: Image.Image, cam: np.ndarray, *, max_side: int = 320, alpha: float = 0.5) -> tuple[Image.Image, Image.Image]:
    """The image (RGB, scaled so its longer side is ``max_side``) and the same with the heatmap blended in."""
    base = image.convert("RGB")
    scale = max_side / max(base.size)
    size = (max(1, round(base.width * scale)), max(1, round(base.height * scale)))
    base = base.resize(size, Image.Resampling.NEAREST if scale >= 4 else Image.Resampling.BILINEAR)
    heat = Image.fromarray((np.clip(cam, 0, 1) * 255).astype(np.uint8), "L").resize(size, Image.Resampling.BICUBIC)
    h = np.asarray(heat, dtype=np.float32) / 255.0
    colored = colormap(h).astype(np.float32)
    a = alpha * (0.35 + 0.65 * h[..., None])  # hot regions more opaque, cold ones still tinted
    blended = np.asarray(base, dtype=np.float32) * (1 - a) + colored * a
    return base, Image.fromarray(blended.clip(0, 255).astype(np.uint8), "RGB")


def png_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
