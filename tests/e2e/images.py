"""Hand-made good and bad images for the HTTP tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from tests.fixtures import encode_image, sample_image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int, *, full: bool = True) -> bytes:
    """An 8-bit grayscale PNG of ``width x height`` zeros. ``full``: the real deflate stream (a few KB that
    inflate to width*height bytes, a decompression bomb); else only one row (header-only size check)."""
    rows = height if full else 1
    raw = (b"\x00" + b"\x00" * width) * rows
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def animated_gif() -> bytes:
    frames = [Image.new("L", (16, 16), color=c) for c in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def truncated_jpeg() -> bytes:
    data = encode_image(sample_image((200, 200), "RGB"), "JPEG", quality=90)
    return data[: len(data) // 2]


def exif_rotated_pngs() -> tuple[bytes, bytes, bytes]:
    """(tagged, upright, untagged): ``tagged`` holds landscape pixels with EXIF orientation 6 (rotate 90° to
    view), ``upright`` the same pixels already rotated, ``untagged`` the landscape pixels without the tag."""
    rng = np.random.default_rng(7)
    landscape = Image.fromarray(rng.integers(0, 256, size=(20, 40), dtype=np.uint8), "L")
    exif = Image.Exif()
    exif[0x0112] = 6
    tagged = encode_image(landscape, "PNG", exif=exif.tobytes())
    upright = encode_image(landscape.transpose(Image.Transpose.ROTATE_270), "PNG")
    return tagged, upright, encode_image(landscape, "PNG")
