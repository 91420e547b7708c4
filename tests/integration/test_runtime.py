from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from inference.errors import InvalidInput
from inference.registry import Registry
from serving.runtime import ModelRuntime
from serving.settings import ServeSettings
from tests.fixtures import encode_image, register_tiny, sample_image


def _settings(root: Path, **kw: object) -> ServeSettings:
    return ServeSettings(models_dir=root, model="tiny", lanes=2, decode_threads=2, poll_interval_s=0, **kw)


def test_classify_images_and_pixels(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    register_tiny(registry)

    async def main() -> None:
        rt = ModelRuntime(_settings(tmp_path))
        await rt.start()
        try:
            imgs = [encode_image(sample_image(seed=i), "PNG") for i in range(4)]
            one = await rt.classify_images(imgs[:1])
            many = await rt.classify_images(imgs)
            assert one.probabilities.shape == (1, 10) and many.probabilities.shape == (4, 10)
            assert np.allclose(one.probabilities[0], many.probabilities[0], atol=1e-6)
            assert one.card.version == 1 and len(one.top_k(3)[0]) == 3
            with pytest.raises(InvalidInput, match="image 1: .*not a recognised image"):
                await rt.classify_images([imgs[0], b"garbage"])
            px = await rt.classify_pixels(np.zeros((2, 28, 28, 1), np.uint8))
            assert px.probabilities.shape == (2, 10)
        finally:
            await rt.stop()

    asyncio.run(main())


def test_hot_swap_under_load_drops_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    register_tiny(registry, seed=0)
    register_tiny(registry, seed=1)

    async def main() -> None:
        rt = ModelRuntime(_settings(tmp_path))
        await rt.start()
        img = encode_image(sample_image(), "PNG")
        versions: list[int] = []

        swapped = asyncio.Event()

        async def client() -> None:
            # Keep sending until the swap is done (a fixed count can finish before it on a fast machine),
            # then a few more, which must all see v2.
            while not swapped.is_set():
                versions.append((await rt.classify_images([img])).card.version)
            for _ in range(3):
                versions.append((await rt.classify_images([img])).card.version)

        tasks = [asyncio.create_task(client()) for _ in range(16)]
        await asyncio.sleep(0.05)
        registry.promote("tiny", 2)
        result = await rt.reload()
        swapped.set()
        await asyncio.gather(*tasks)
        await rt.stop()
        assert result["changed"] and result["version"] == 2
        assert len(versions) >= 16 * 4 and set(versions) == {1, 2} and versions[-16:] == [2] * 16

    asyncio.run(main())
