"""A confusion matrix drawn as a PNG, for a version whose training wrote none (admin/confusion.py finds it).

Drawn with Pillow (already a core dependency) rather than matplotlib, so the admin runner needs nothing from
the training extra. Cells are shaded by the row-normalised value (recall), and show the counts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: Any) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return int(right - left), int(bottom - top)


def render_png(matrix: Sequence[Sequence[float]], labels: Sequence[str]) -> bytes:
    """rows = true class, columns = predicted class."""
    cm = np.asarray(matrix, dtype=np.float64)
    n = cm.shape[0]
    cell = max(14, min(48, 560 // max(1, n)))
    show_numbers = cell >= 22
    font = _font(max(9, min(14, cell // 3)))
    small = _font(12)
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [str(x)[:24] for x in labels]
    label_w = max(_text_size(scratch, lbl, small)[0] for lbl in labels) + 10
    pad, title_h = 10, 18
    left = pad + title_h + label_w
    top = pad + title_h + label_w
    width, height = left + n * cell + pad, top + n * cell + pad
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)

    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    lo, hi = np.array([247, 251, 255]), np.array([8, 48, 107])  # light to dark blue
    for i in range(n):
        for j in range(n):
            x0, y0 = left + j * cell, top + i * cell
            rgb = tuple(int(v) for v in lo + (hi - lo) * norm[i, j])
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=rgb, outline=(225, 229, 235))
            if show_numbers and cm[i, j]:
                text = f"{cm[i, j]:g}"
                tw, th = _text_size(draw, text, font)
                color = "white" if norm[i, j] > 0.5 else (30, 30, 30)
                draw.text((x0 + (cell - tw) / 2, y0 + (cell - th) / 2 - 1), text, fill=color, font=font)
    for i, lbl in enumerate(labels):  # true labels on the left
        tw, th = _text_size(draw, lbl, small)
        draw.text((left - 6 - tw, top + i * cell + (cell - th) / 2 - 2), lbl, fill=(40, 40, 40), font=small)
    for j, lbl in enumerate(labels):  # predicted labels on top, rotated
        tw, th = _text_size(draw, lbl, small)
        strip = Image.new("RGB", (tw + 4, th + 6), "white")
        ImageDraw.Draw(strip).text((2, 0), lbl, fill=(40, 40, 40), font=small)
        strip = strip.rotate(90, expand=True)
        img.paste(strip, (int(left + j * cell + (cell - strip.width) / 2), top - 6 - strip.height))
    draw.text((left, pad), "predicted class", fill=(90, 90, 90), font=small)
    tw, th = _text_size(draw, "true class", small)
    title = Image.new("RGB", (tw + 4, th + 6), "white")
    ImageDraw.Draw(title).text((2, 0), "true class", fill=(90, 90, 90), font=small)
    title = title.rotate(90, expand=True)
    img.paste(title, (pad, top + max(0, (n * cell - title.height) // 2)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
