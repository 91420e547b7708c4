from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from inference.errors import InvalidInput, PayloadTooLarge
from inference.imagecodec import DecodeLimits, decode_image
from tests.fixtures import encode_image, sample_image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_decodes_common_formats(fmt: str, mode: str) -> None:
    img = decode_image(encode_image(sample_image(mode=mode), fmt))
    assert img.size == (64, 48)


def test_rgba_png_decodes() -> None:
    assert decode_image(encode_image(sample_image(mode="RGBA"), "PNG")).mode == "RGBA"


def test_exif_orientation_is_applied() -> None:
    img = sample_image(size=(80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode_image(img, "JPEG", exif=exif.tobytes())
    assert decode_image(data).size == (40, 80)


def test_empty_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"")


def test_not_an_image() -> None:
    with pytest.raises(InvalidInput, match="not a recognised image"):
        decode_image(b"hello, this is text and not an image at all")


def test_truncated_jpeg() -> None:
    data = encode_image(sample_image(size=(256, 256)), "JPEG", quality=95)
    with pytest.raises(InvalidInput, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2])


def test_byte_limit() -> None:
    with pytest.raises(PayloadTooLarge, match="bytes"):
        decode_image(b"x" * 100, DecodeLimits(max_bytes=10))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions with a tiny compressed body: a decompression bomb."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * width
    idat = zlib.compress(row * 16, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding() -> None:
    data = _png_header_only(30000, 30000)
    assert len(data) < 100_000
    with pytest.raises(PayloadTooLarge, match="pixels|dimensions"):
        decode_image(data)


def test_huge_side_refused() -> None:
    with pytest.raises(PayloadTooLarge, match="12000x10"):
        decode_image(_png_header_only(12000, 10))


def test_animated_gif_refused() -> None:
    frames = [sample_image(mode="RGB", seed=i).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    with pytest.raises(InvalidInput, match="animated"):
        decode_image(buf.getvalue())


def test_single_frame_gif_ok() -> None:
    assert decode_image(encode_image(sample_image().convert("P"), "GIF")).size == (64, 48)


def test_jpeg_draft_reduces_decode_size() -> None:
    data = encode_image(sample_image(size=(640, 480)), "JPEG")
    img = decode_image(data, draft=("RGB", (224, 224)))
    assert img.size[0] >= 224 and img.size[1] >= 224 and img.size[0] < 640
    assert np.asarray(img).shape[2] == 3
