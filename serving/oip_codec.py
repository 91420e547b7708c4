"""Open Inference Protocol (KServe v2) tensors <-> numpy, shared by the gRPC and REST adapters.

Wire formats differ (protobuf ``contents``/``raw_*_contents`` vs JSON ``data`` plus the binary-data
extension), but a tensor always ends up as one :class:`Tensor`: name, datatype, shape and a numpy array
of exactly that shape. BYTES tensors are numpy object arrays of ``bytes``; on the wire each element is a
4-byte little-endian length followed by its bytes (the layout tritonclient's ``serialize_byte_tensor``
writes). Every malformed tensor raises :class:`InvalidInput` naming the tensor and the problem.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference.errors import InvalidInput

NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
_LEN = struct.Struct("<I")


@dataclass(frozen=True)
class Tensor:
    """A decoded input or an output to encode. ``data.shape == shape`` always holds."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass(frozen=True)
class RequestedOutput:
    """An entry of the request's ``outputs``. ``classification`` > 0 asks for the top-k classes as BYTES
    ``"score:index:label"`` strings instead of the tensor (the classification extension)."""

    name: str
    classification: int = 0
    binary: bool | None = None  # REST only: the ``binary_data`` parameter, None when not given


def check_header(name: str, datatype: str, shape: Sequence[Any]) -> tuple[int, ...]:
    """Validate a tensor's datatype and shape; return the shape as a tuple of ints."""
    if not isinstance(name, str) or not name:
        raise InvalidInput("every input needs a non-empty 'name'")
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise InvalidInput(
            f"input '{name}': unknown datatype {datatype!r} (use one of {', '.join(NUMPY_DTYPES)})"
        )
    if not isinstance(shape, Sequence) or isinstance(shape, str | bytes):
        raise InvalidInput(f"input '{name}': 'shape' must be a list of integers")
    dims: list[int] = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise InvalidInput(f"input '{name}': shape {list(shape)} must hold non-negative integers")
        dims.append(int(d))
    return tuple(dims)


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes | memoryview) -> Tensor:
    """A tensor from its raw little-endian bytes (gRPC ``raw_input_contents``, REST binary data)."""
    dims = check_header(name, datatype, shape)
    count = math.prod(dims)
    if datatype == "BYTES":
        data = _split_bytes(name, raw, count)
    else:
        dtype = NUMPY_DTYPES[datatype]
        expected = count * dtype.itemsize
        if len(raw) != expected:
            raise InvalidInput(
                f"input '{name}': shape {list(dims)} of {datatype} needs {expected} bytes of data, got {len(raw)}"
            )
        data = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    return Tensor(name, datatype, dims, data.reshape(dims))


def from_values(
    name: str, datatype: str, shape: Sequence[int], values: Any, *, base64_bytes: bool = False
) -> Tensor:
    """A tensor from a (flat or nested) list of values: REST JSON ``data`` or protobuf ``contents``.

    BYTES values may be ``bytes`` (protobuf) or ``str`` (JSON: UTF-8, or base64 when ``base64_bytes``).
    """
    dims = check_header(name, datatype, shape)
    count = math.prod(dims)
    if datatype == "BYTES":
        flat = list(_flatten(values))
        data = np.empty(len(flat), dtype=np.object_)
        for i, v in enumerate(flat):
            data[i] = _to_bytes(name, v, base64_bytes)
    else:
        try:
            data = np.asarray(values, dtype=NUMPY_DTYPES[datatype]).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(
                f"input '{name}': data is not a (nested) list of {datatype} values: {exc}"
            ) from None
    if data.size != count:
        raise InvalidInput(f"input '{name}': shape {list(dims)} needs {count} values, got {data.size}")
    return Tensor(name, datatype, dims, data.reshape(dims))


def to_raw(tensor: Tensor) -> bytes:
    """A tensor's raw little-endian bytes (gRPC ``raw_output_contents``, REST binary data)."""
    if tensor.datatype == "BYTES":
        return b"".join(_LEN.pack(len(v)) + v for v in tensor.data.reshape(-1))
    dtype = NUMPY_DTYPES[tensor.datatype].newbyteorder("<")
    return np.ascontiguousarray(tensor.data, dtype=dtype).tobytes()


def to_json_values(tensor: Tensor) -> list[Any]:
    """A tensor's values as a flat row-major list for JSON (BYTES as UTF-8 strings)."""
    flat = tensor.data.reshape(-1)
    if tensor.datatype == "BYTES":
        return [v.decode("utf-8", errors="replace") for v in flat]
    return flat.tolist()


def bytes_tensor(name: str, values: Sequence[bytes | str], shape: Sequence[int] | None = None) -> Tensor:
    """A BYTES output tensor from Python strings/bytes (str is UTF-8 encoded)."""
    data = np.empty(len(values), dtype=np.object_)
    for i, v in enumerate(values):
        data[i] = v.encode("utf-8") if isinstance(v, str) else bytes(v)
    dims = tuple(shape) if shape is not None else (len(values),)
    return Tensor(name, "BYTES", dims, data.reshape(dims))


# ---- helpers ---------------------------------------------------------------------------------------
def _split_bytes(name: str, raw: bytes | memoryview, count: int) -> np.ndarray:
    view = memoryview(raw)
    out = np.empty(count, dtype=np.object_)
    offset, size = 0, len(view)
    for i in range(count):
        if offset + 4 > size:
            raise InvalidInput(f"input '{name}': BYTES data holds {i} elements, the shape needs {count}")
        (length,) = _LEN.unpack_from(view, offset)
        offset += 4
        if offset + length > size:
            raise InvalidInput(
                f"input '{name}': BYTES element {i} claims {length} bytes but the data ends first"
            )
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != size:
        raise InvalidInput(
            f"input '{name}': {size - offset} bytes left over after the {count} BYTES elements of its shape"
        )
    return out


def _flatten(values: Any) -> Any:
    if isinstance(values, list | tuple):
        for v in values:
            yield from _flatten(v)
    else:
        yield values


def _to_bytes(name: str, value: Any, base64_bytes: bool) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        if base64_bytes:
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(f"input '{name}': an element is not valid base64") from None
        return value.encode("utf-8")
    raise InvalidInput(f"input '{name}': BYTES elements must be strings, got {type(value).__name__}")
