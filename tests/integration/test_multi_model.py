"""Several models in one runtime (IMGSERVE_MODELS): own batcher lanes, variant, hot swap and statistics each;
execution providers (IMGSERVE_PROVIDERS). Real runtimes, real ORT sessions, tiny models built here."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from inference.errors import ConfigError, NotFound
from inference.registry import Registry
from serving.runtime import ModelRuntime
from serving.settings import ServeSettings
from tests.fixtures import encode_image, register_tiny, sample_image
from tests.integration.oip_harness import OipTestServer


def _registry(root: Path) -> Registry:
    registry = Registry(root)
    register_tiny(registry, "gray", seed=0)  # 28x28x1, 10 classes
    register_tiny(registry, "rgb", seed=1, height=16, width=12, channels=3, classes=4)
    register_tiny(registry, "spare", seed=2)
    return registry


def _settings(root: Path, **kw: object) -> ServeSettings:
    base: dict[str, object] = dict(models_dir=root, poll_interval_s=0, lanes=4, decode_threads=2, workers=1,
                                   auto_batch=False)
    return ServeSettings(**{**base, **kw})


def test_each_model_has_its_own_slot_lanes_variant_and_swap(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    runtime = ModelRuntime(_settings(tmp_path, models="rgb:fp32, gray"))

    async def scenario() -> None:
        await runtime.start()
        try:
            assert list(runtime.slots) == ["rgb", "gray"] and runtime.default == "rgb" and runtime.ready
            assert [s.batcher.config.lanes for s in runtime.slots.values()] == [2, 2]  # 4 lanes shared out
            image = encode_image(sample_image(seed=3))
            default = await runtime.classify_images([image])
            gray = await runtime.classify_images([image], name="gray")
            assert default.card.name == "rgb" and default.probabilities.shape == (1, 4)
            assert gray.card.name == "gray" and gray.probabilities.shape == (1, 10)
            assert runtime.describe()["variant"] == "fp32" and runtime.describe("gray")["variant"] == "int8"
            assert runtime.describe("gray")["execution_provider"] == "CPUExecutionProvider"
            listed = runtime.list_models()
            assert [(m["name"], m["default"], m["version"]) for m in listed] == [("rgb", True, 1), ("gray", False, 1)]
            with pytest.raises(NotFound, match="this server serves 'rgb', 'gray'"):
                await runtime.classify_images([image], name="spare")

            new = register_tiny(registry, "gray", seed=5, promote=True)  # v2 of one model only
            result = await runtime.reload()
            assert [(m["model"], m["changed"]) for m in result["models"]] == [("rgb", False), ("gray", True)]
            assert runtime.describe("gray")["version"] == new.version and runtime.describe()["version"] == 1
            assert (await runtime.classify_images([image], name="gray")).card.version == new.version
        finally:
            await runtime.stop()

    asyncio.run(scenario())


def test_models_setting_parses_lists_and_star(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    every = _settings(tmp_path, models="*").model_specs(registry.list_models)
    assert every == [("gray", "int8"), ("rgb", "int8"), ("spare", "int8")]
    assert _settings(tmp_path, model="spare").model_specs(registry.list_models) == [("spare", "int8")]
    assert _settings(tmp_path, models="rgb:fp32,gray", variant="fp32").model_specs(list) == [
        ("rgb", "fp32"), ("gray", "fp32")
    ]
    for bad, message in (("gray,gray", "twice"), ("gray:fp16", "unknown variant"), ("a b", "invalid model name")):
        with pytest.raises(ConfigError, match=message):
            _settings(tmp_path, models=bad).model_specs(list)
    with pytest.raises(ConfigError, match="holds no model"):
        _settings(tmp_path, models="*").model_specs(list)


def test_providers_pass_through_and_a_missing_one_names_the_installed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'CUDA' is not available .*installed: .*CPUExecutionProvider"):
        ServeSettings.from_env(models_dir=tmp_path, providers="CUDA,CPU")
    settings = _settings(tmp_path, providers="cpu")  # short, any case
    assert settings.session_options().providers == ("cpu",)
    _registry(tmp_path)
    runtime = ModelRuntime(_settings(tmp_path, model="gray", providers="CPU"))

    async def scenario() -> str:
        await runtime.start()
        try:
            return runtime.describe()["execution_provider"]
        finally:
            await runtime.stop()

    assert asyncio.run(scenario()) == "CPUExecutionProvider"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OipTestServer]:
    root = tmp_path_factory.mktemp("models")
    _registry(root)
    server = OipTestServer(_settings(root, models="gray,rgb", max_batch_images=8)).start()
    yield server
    server.stop()


def test_every_model_under_v2_models(served: OipTestServer) -> None:
    g = grpcclient.InferenceServerClient(served.grpc_url)
    h = httpclient.InferenceServerClient(served.http_url)
    try:
        for name, shape, classes in (("gray", [28, 28, 1], 10), ("rgb", [16, 12, 3], 4)):
            assert g.is_model_ready(name) and h.is_model_ready(name, "1")
            meta = h.get_model_metadata(name)
            assert meta["inputs"][1]["shape"] == [-1, *shape] and meta["outputs"][0]["shape"] == [-1, classes]
            assert h.get_model_config(name)["input"][1]["dims"] == shape
            pixels = np.random.default_rng(0).integers(0, 256, size=(2, *shape), dtype=np.uint8)
            inp = grpcclient.InferInput("input", [2, *shape], "UINT8")
            inp.set_data_from_numpy(pixels)
            result = g.infer(name, [inp], model_version="1")
            assert result.as_numpy("probabilities").shape == (2, classes)
            data = np.array([encode_image(sample_image(seed=1))], dtype=np.object_)
            hi = httpclient.InferInput("image", [1], "BYTES")
            hi.set_data_from_numpy(data)
            assert h.infer(name, [hi]).get_response()["model_name"] == name
        stats = {e["name"]: e for e in h.get_inference_statistics()["model_stats"]}
        assert {"gray", "rgb"} <= set(stats) and stats["rgb"]["inference_count"] >= 3
        index = {m["name"]: m["state"] for m in h.get_model_repository_index()}
        assert index == {"gray": "READY", "rgb": "READY", "spare": "UNAVAILABLE"}
        with pytest.raises(InferenceServerException, match="this server serves 'gray', 'rgb'"):
            h.get_model_metadata("spare")
    finally:
        g.close()
        h.close()


def test_imgserve_serve_refuses_a_missing_provider_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from imgserve.cli import main

    assert main(["serve", "--providers", "OpenVINO", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imgserve serve: error: execution provider 'OpenVINO' is not available") and "CPUExecutionProvider" in err
    assert main(["serve", "--providers", "cpu", "--models", "a,b", "--dry-run"]) == 0
