from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from inference.errors import InvalidInput
from inference.metadata import Preprocessing
from inference.preprocess import image_to_pixels, model_input, normalize, preprocess_images, to_model_layout
from tests.fixtures import sample_image


def test_gray_spec_converts_and_resizes() -> None:
    spec = Preprocessing(28, 28, 1)
    px = image_to_pixels(sample_image(size=(100, 50)), spec)
    assert px.shape == (28, 28, 1) and px.dtype == np.uint8


def test_rgb_spec_from_gray() -> None:
    px = image_to_pixels(sample_image(mode="L"), Preprocessing(32, 16, 3))
    assert px.shape == (32, 16, 3)
    assert (px[..., 0] == px[..., 1]).all()


def test_transparent_pixels_become_white() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    px = image_to_pixels(img, Preprocessing(4, 4, 3))
    assert (px == 255).all()


def test_normalize_scale_mean_std() -> None:
    spec = Preprocessing(2, 2, 3, scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    x = normalize(np.full((1, 2, 2, 3), 255, np.uint8), spec)
    assert x.dtype == np.float32 and np.allclose(x, 1.0)
    x = normalize(np.zeros((2, 2, 3), np.uint8), spec)
    assert x.shape == (1, 2, 2, 3) and np.allclose(x, -1.0)


def test_normalize_rejects_wrong_shape() -> None:
    with pytest.raises(InvalidInput, match=r"\[N, 28, 28, 1\]"):
        normalize(np.zeros((1, 28, 28, 3), np.uint8), Preprocessing(28, 28, 1))


def test_preprocess_images_batch() -> None:
    batch = preprocess_images([sample_image(seed=i) for i in range(3)], Preprocessing(28, 28, 1))
    assert batch.shape == (3, 28, 28, 1) and 0.0 <= batch.min() and batch.max() <= 1.0


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        Preprocessing(28, 28, 2)
    with pytest.raises(ValueError):
        Preprocessing(28, 28, 3, mean=(0.1, 0.2))


def test_nchw_layout_with_per_channel_mean_std() -> None:
    spec = Preprocessing(2, 3, 3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), layout="NCHW")
    assert spec.input_shape == (3, 2, 3) and spec.shape == (2, 3, 3)
    pixels = np.random.default_rng(0).integers(0, 256, size=(4, 2, 3, 3), dtype=np.uint8)
    x = model_input(pixels, spec)
    assert x.shape == (4, 3, 2, 3) and x.flags.c_contiguous
    for c, (m, s) in enumerate(zip(spec.mean, spec.std, strict=True)):
        np.testing.assert_allclose(x[:, c], (pixels[..., c] / 255.0 - m) / s, rtol=1e-5)
    nhwc = Preprocessing(2, 3, 3)
    assert model_input(pixels, nhwc).shape == (4, 2, 3, 3)
    assert to_model_layout(normalize(pixels, spec), spec).shape == (4, 3, 2, 3)
    with pytest.raises(ValueError, match="layout"):
        Preprocessing(2, 2, 3, layout="CHWN")
