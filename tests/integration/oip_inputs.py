"""Inputs and error capture for the OIP tests against the tiny model (tests/integration/conftest.py serves it):
its shape, PNG images and pixel batches, tritonclient gRPC/REST inputs, and the exception a failing call raises."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.fixtures import encode_image, sample_image

H, W, C, CLASSES = 28, 28, 1, 10


def _images(n: int) -> np.ndarray:
    return np.array([encode_image(sample_image(seed=i), "PNG") for i in range(n)], dtype=np.object_)


def _pixels(n: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, size=(n, H, W, C), dtype=np.uint8)


def _grpc_input(name: str, data: np.ndarray, datatype: str) -> grpcclient.InferInput:
    inp = grpcclient.InferInput(name, list(data.shape), datatype)
    return inp.set_data_from_numpy(data)


def _http_input(name: str, data: np.ndarray, datatype: str, binary: bool = True) -> httpclient.InferInput:
    inp = httpclient.InferInput(name, list(data.shape), datatype)
    inp.set_data_from_numpy(data, binary_data=binary)
    return inp


def _grpc_error(call) -> InferenceServerException:  # type: ignore[no-untyped-def]
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value
