"""The one preprocessing implementation, shared by training, export and serving.

Three steps, split so that each can run where it is cheapest:
``image_to_pixels`` (Pillow: mode + resize -> uint8 HxWxC), ``normalize`` (numpy: uint8 NHWC -> float32 NHWC,
``(x * scale - mean) / std`` per channel) and ``to_model_layout`` (NHWC -> the graph's layout, NCHW for
PyTorch-style models). Pixels stay NHWC up to the last step, so clients, decoders and the OIP ``input`` tensor
see one layout whatever the model. Training applies ``normalize`` to uint8 arrays it already holds;
``model_input`` is what an ONNX session is fed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import InvalidInput
from .metadata import Preprocessing

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def image_to_pixels(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Convert a decoded image to the model's colour mode and size; returns uint8 (H, W, C)."""
    if image.mode != spec.pil_mode:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # Composite transparent pixels over white, not black: what a person sees in a viewer.
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        image = image.convert(spec.pil_mode)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), _RESAMPLE.get(spec.resize, Image.Resampling.BILINEAR))
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return pixels


def normalize(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """uint8 NHWC (or HWC) -> float32 model input: ``(x * scale - mean) / std``."""
    x = np.asarray(pixels)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != spec.shape:
        raise InvalidInput(
            f"expected images shaped [N, {spec.height}, {spec.width}, {spec.channels}], got {list(x.shape)}"
        )
    out = x.astype(np.float32)
    if spec.scale != 1.0:
        out *= np.float32(spec.scale)
    if any(m != 0.0 for m in spec.mean):
        out -= np.asarray(spec.mean, dtype=np.float32)
    if any(s != 1.0 for s in spec.std):
        out /= np.asarray(spec.std, dtype=np.float32)
    return out


def to_model_layout(batch: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """float32 NHWC -> the model's layout (a contiguous copy for NCHW, the same array for NHWC)."""
    if spec.layout == "NCHW":
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    return batch


def model_input(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """uint8 NHWC pixels -> exactly what the ONNX graph takes (normalised, in its layout)."""
    return to_model_layout(normalize(pixels, spec), spec)


def preprocess_images(images: list[Image.Image], spec: Preprocessing) -> np.ndarray:
    """Decoded images -> float32 batch ready for the model (in its layout)."""
    return model_input(np.stack([image_to_pixels(im, spec) for im in images]), spec)
