from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from inference.errors import InvalidInput
from serving.oip_codec import bytes_tensor, from_raw, from_values, to_json_values, to_raw


def test_numeric_raw_round_trip() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    t = from_raw("x", "FP32", [2, 3, 4], x.tobytes())
    assert t.shape == (2, 3, 4) and t.data.dtype == np.float32
    np.testing.assert_array_equal(t.data, x)
    assert to_raw(t) == x.tobytes()
    with pytest.raises(
        InvalidInput, match=r"input 'x': shape \[2, 3, 4\] of FP32 needs 96 bytes of data, got 95"
    ):
        from_raw("x", "FP32", [2, 3, 4], x.tobytes()[:-1])


def test_bytes_raw_matches_tritonclient_layout() -> None:
    values = np.array([b"\x89PNG\x00", b"", "é".encode()], dtype=np.object_)
    raw = serialize_byte_tensor(values).item()
    t = from_raw("image", "BYTES", [3, 1], raw)
    assert t.shape == (3, 1) and list(t.data.reshape(-1)) == list(values)
    assert list(deserialize_bytes_tensor(to_raw(t))) == list(values)
    with pytest.raises(InvalidInput, match="holds 3 elements, the shape needs 4"):
        from_raw("image", "BYTES", [4], raw)
    with pytest.raises(InvalidInput, match="bytes left over"):
        from_raw("image", "BYTES", [2], raw)
    with pytest.raises(InvalidInput, match="element 0 claims 5 bytes but the data ends first"):
        from_raw("image", "BYTES", [1], raw[:6])


def test_values_flat_nested_and_base64() -> None:
    nested = from_values("p", "UINT8", [1, 2, 2], [[[1, 2], [3, 4]]])
    flat = from_values("p", "UINT8", [1, 2, 2], [1, 2, 3, 4])
    np.testing.assert_array_equal(nested.data, flat.data)
    assert from_values("i", "BYTES", [1], ["aGk="], base64_bytes=True).data[0] == b"hi"
    assert from_values("i", "BYTES", [1], ["hi"]).data[0] == b"hi"
    with pytest.raises(InvalidInput, match="not valid base64"):
        from_values("i", "BYTES", [1], ["@@"], base64_bytes=True)
    with pytest.raises(InvalidInput, match="not a \\(nested\\) list of UINT8 values"):
        from_values("p", "UINT8", [1], [300])
    with pytest.raises(InvalidInput, match=r"shape \[2\] needs 2 values, got 3"):
        from_values("p", "FP32", [2], [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("datatype", "shape", "text"),
    [
        ("FLOAT", [1], "unknown datatype 'FLOAT'"),
        (["FP32"], [1], "unknown datatype"),
        ("FP32", [-1], "non-negative integers"),
        ("FP32", "1", "must be a list"),
        ("FP32", None, "must be a list"),
    ],
)
def test_bad_headers(datatype: object, shape: object, text: str) -> None:
    with pytest.raises(InvalidInput, match=text):
        from_values("x", datatype, shape, [1.0])  # type: ignore[arg-type]


def test_json_values() -> None:
    assert to_json_values(bytes_tensor("label", ["cat", "dög"])) == ["cat", "dög"]
    t = from_values("p", "FP32", [1, 2], [0.1, 0.2])
    assert np.array(to_json_values(t), dtype=np.float32).tolist() == t.data.reshape(-1).tolist()
