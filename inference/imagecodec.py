"""Decode untrusted image bytes safely: size limits before decoding, no decompression bombs,
no animations, EXIF orientation applied. Every failure is an ``InvalidInput`` whose message a client can read."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidInput, PayloadTooLarge

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
# File name endings that datasets (uploads, class folders, held-out sets) treat as images: one list for all.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000
    max_side: int = 10_000


DEFAULT_LIMITS = DecodeLimits()


def decode_image(
    data: bytes,
    limits: DecodeLimits = DEFAULT_LIMITS,
    *,
    draft: tuple[str, tuple[int, int]] | None = None,
) -> Image.Image:
    """Decode ``data`` into a loaded, upright Pillow image.

    ``draft=(mode, (w, h))`` lets JPEG decode straight to a reduced scale (DCT scaling) that is still at
    least ``(w, h)``: about half the decode time for a 640x480 photo going to 224x224.
    The header is read and the dimensions checked *before* any pixel is decoded.
    """
    return load_image(open_image(data, limits), draft=draft)


def open_image(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Image.Image:
    """Read and check only the header of ``data`` (format, dimensions, frames): microseconds, no pixels.
    :func:`load_image` decodes it; the two halves of :func:`decode_image` may run on different threads."""
    if not data:
        raise InvalidInput("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"the image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(
            f"the image's dimensions are too large; the limit is {limits.max_pixels} pixels"
        ) from None
    except UnidentifiedImageError:
        raise InvalidInput(
            "the data is not a recognised image (supported: " + ", ".join(sorted(ALLOWED_FORMATS)) + ")"
        ) from None
    except Exception:  # Pillow raises many types for garbage headers
        raise InvalidInput("the image header is corrupt or unreadable") from None

    fmt = image.format or "unknown"
    if fmt not in ALLOWED_FORMATS:
        raise InvalidInput(f"image format {fmt} is not supported (supported: {', '.join(sorted(ALLOWED_FORMATS))})")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidInput("the image has no pixels")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} pixels; the limit is {limits.max_side} pixels a side "
            f"and {limits.max_pixels} pixels in all"
        )
    if getattr(image, "is_animated", False) or getattr(image, "n_frames", 1) > 1:
        raise InvalidInput(f"animated or multi-frame images are not supported ({fmt} with {image.n_frames} frames)")
    return image


def load_image(image: Image.Image, *, draft: tuple[str, tuple[int, int]] | None = None) -> Image.Image:
    """Decode the pixels of an image checked by :func:`open_image`; EXIF orientation applied."""
    if draft is not None and image.format == "JPEG":
        mode, size = draft
        # Only ask for the mode Pillow can produce from the JPEG's colour space directly.
        image.draft(mode if image.mode in ("RGB", "L") else None, size)
    try:
        image.load()
    except OSError as exc:
        text = str(exc).lower()
        if "truncated" in text:
            raise InvalidInput("the image data is truncated") from None
        raise InvalidInput("the image data is corrupt and cannot be decoded") from None
    except Exception:
        raise InvalidInput("the image data is corrupt and cannot be decoded") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not reject an otherwise fine image
        pass
    return image
