"""Deterministic image corpora for load tests, generated once and cached on disk (git-ignored).

Two kinds, one per workload:

- ``jpeg-640x480``: photo-like JPEGs around 640x480 (some portrait): smooth two-colour gradients with a
  vignette, soft-edged shapes at several blur levels, low-frequency shading and sensor-like noise, saved
  at varied quality. Real photos matter here because JPEG decode time depends on content (flat synthetic
  images decode far faster than photos and would flatter every server).
- ``png-28-gray``: 28x28 grayscale PNGs, the Fashion-MNIST test images when Debian's
  ``dataset-fashion-mnist`` is installed, otherwise generated garment-like blobs.

The same ``seed`` always gives the same bytes, so runs on different days compare like with like.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from inference.atomic import atomic_write_bytes

GENERATOR_VERSION = 1  # bump when the pictures change, so stale caches are not reused
FASHION_MNIST_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


@dataclass(frozen=True)
class CorpusKind:
    name: str
    content_type: str
    suffix: str
    default_count: int
    description: str


KINDS: dict[str, CorpusKind] = {
    "jpeg-640x480": CorpusKind(
        "jpeg-640x480", "image/jpeg", ".jpg", 48, "photo-like JPEGs ~640x480 (gradients, soft shapes, noise)"
    ),
    "png-28-gray": CorpusKind("png-28-gray", "image/png", ".png", 256, "28x28 grayscale PNGs (Fashion-MNIST test set)"),
}


@dataclass(frozen=True)
class Corpus:
    kind: str
    content_type: str
    suffix: str
    images: tuple[bytes, ...]
    source: str  # "generated" or where the pixels came from
    path: Path

    @property
    def mean_bytes(self) -> float:
        return float(np.mean([len(b) for b in self.images])) if self.images else 0.0

    def median_image(self) -> bytes:
        """The median-size image: what a load generator that sends one body (h2load) sends."""
        return sorted(self.images, key=len)[len(self.images) // 2]

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "count": len(self.images),
            "mean_bytes": round(self.mean_bytes),
            "content_type": self.content_type,
            "source": self.source,
            "sha256": hashlib.sha256(b"".join(self.images)).hexdigest()[:16],
        }


def default_cache_dir() -> Path:
    env = os.environ.get("IMGSERVE_BENCH_CACHE")
    return Path(env) if env else Path(__file__).resolve().parent / ".cache"


def load_corpus(kind: str, count: int | None = None, *, seed: int = 0, cache_dir: Path | None = None) -> Corpus:
    """The corpus ``kind`` with ``count`` images, from the cache or generated (and cached) now."""
    if kind not in KINDS:
        raise ValueError(f"unknown corpus kind {kind!r}; choose one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    count = count or spec.default_count
    folder = (cache_dir or default_cache_dir()) / "corpus" / f"{kind}-n{count}-s{seed}-g{GENERATOR_VERSION}"
    manifest = folder / "manifest.json"
    if manifest.is_file():
        meta = json.loads(manifest.read_text())
        files = [folder / name for name in meta["files"]]
        if all(f.is_file() for f in files):
            return Corpus(kind, spec.content_type, spec.suffix, tuple(f.read_bytes() for f in files), meta["source"], folder)
    images, source = _generate(kind, count, seed)
    _write_cache(folder, spec.suffix, images, source)
    return Corpus(kind, spec.content_type, spec.suffix, tuple(images), source, folder)


def _write_cache(folder: Path, suffix: str, images: list[bytes], source: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, data in enumerate(images):  # unique temporary names: two benchmark runs may fill the cache at once
        name = f"{i:04d}{suffix}"
        atomic_write_bytes(folder / name, data)
        names.append(name)
    # written last: a folder without it is regenerated
    atomic_write_bytes(folder / "manifest.json", json.dumps({"files": names, "source": source}).encode())


def _generate(kind: str, count: int, seed: int) -> tuple[list[bytes], str]:
    if kind == "jpeg-640x480":
        return [photo_like_jpeg(np.random.default_rng([seed, i])) for i in range(count)], "generated"
    if FASHION_MNIST_TEST.is_file():
        pixels = _read_idx_images(FASHION_MNIST_TEST, count)
        return [_png(Image.fromarray(p, "L")) for p in pixels], str(FASHION_MNIST_TEST)
    return [_png(garment_like(np.random.default_rng([seed, i]))) for i in range(count)], "generated"


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _read_idx_images(path: Path, count: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        header = np.frombuffer(fh.read(16), dtype=">i4")
        n, rows, cols = int(header[1]), int(header[2]), int(header[3])
        count = min(count, n)
        data = np.frombuffer(fh.read(count * rows * cols), dtype=np.uint8)
    return data.reshape(count, rows, cols)


def photo_like_jpeg(rng: np.random.Generator) -> bytes:
    """One photo-like JPEG: about 640x480 (one in five portrait), quality 78-94."""
    w = int(rng.integers(600, 681))
    h = int(rng.integers(440, 521))
    if rng.random() < 0.2:
        w, h = h, w
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Background: gradient between two colours along a random direction, plus a vignette.
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx / w + np.sin(angle) * yy / h + 1.0) / 2.0
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    r = np.sqrt(((xx - cx) / w) ** 2 + ((yy - cy) / h) ** 2)
    img *= (1.0 - rng.uniform(0.2, 0.6) * r**2)[..., None]
    base = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")

    # Shapes in a few depth layers: far ones blurred more (depth of field).
    for layer in range(3):
        overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for _ in range(int(rng.integers(2, 7))):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3)) + (int(rng.integers(120, 256)),)
            x0, y0 = rng.uniform(-0.1, 0.9) * w, rng.uniform(-0.1, 0.9) * h
            sw, sh = rng.uniform(0.05, 0.5) * w, rng.uniform(0.05, 0.5) * h
            shape = rng.integers(0, 3)
            if shape == 0:
                draw.ellipse([x0, y0, x0 + sw, y0 + sh], fill=colour)
            elif shape == 1:
                draw.rectangle([x0, y0, x0 + sw, y0 + sh], fill=colour)
            else:
                pts = [(x0 + rng.uniform(0, sw), y0 + rng.uniform(0, sh)) for _ in range(int(rng.integers(3, 7)))]
                draw.polygon(pts, fill=colour)
        blur = [6.0, 2.5, 0.8][layer] * rng.uniform(0.6, 1.4)
        base = Image.alpha_composite(base.convert("RGBA"), overlay.filter(ImageFilter.GaussianBlur(blur))).convert("RGB")

    arr = np.asarray(base, dtype=np.float32)
    # Low-frequency shading (uneven light) and high-frequency sensor noise: both cost the JPEG coder.
    small = rng.normal(0, 18, size=(max(2, h // 60), max(2, w // 60), 1)).astype(np.float32)
    shade = np.asarray(Image.fromarray(small[..., 0]).resize((w, h), Image.Resampling.BICUBIC))[..., None]
    noise = rng.normal(0, rng.uniform(3, 10), size=arr.shape).astype(np.float32)
    arr = np.clip(arr + shade + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="JPEG", quality=int(rng.integers(78, 95)))
    return buf.getvalue()


def garment_like(rng: np.random.Generator) -> Image.Image:
    """A 28x28 grayscale blob on black, in the spirit of Fashion-MNIST (used only without the data set)."""
    arr = np.zeros((28, 28), dtype=np.float32)
    yy, xx = np.mgrid[0:28, 0:28]
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(8, 20), rng.uniform(6, 22)
        sx, sy = rng.uniform(3, 9), rng.uniform(4, 11)
        arr += rng.uniform(120, 255) * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2 < 1)
    arr += rng.normal(0, 12, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
