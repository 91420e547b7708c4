"""serving.multipart: the fast path gives Starlette's answer, and hands everything unusual to Starlette."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from serving.multipart import boundary_of, parse_form, read_form

B = b"x7Yboundary"
CT = "multipart/form-data; boundary=x7Yboundary"


def body(*parts: tuple[bytes, bytes], end: bytes = b"--\r\n") -> bytes:
    """parts: (header lines, content)"""
    out = b""
    for headers, content in parts:
        out += b"--" + B + b"\r\n" + headers + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + B + end


def file_part(name: str, data: bytes, filename: str = "a.png") -> tuple[bytes, bytes]:
    head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: image/png'
    return head.encode(), data


def field_part(name: str, value: bytes) -> tuple[bytes, bytes]:
    return f'Content-Disposition: form-data; name="{name}"'.encode(), value


async def starlette_items(data: bytes, content_type: str = CT, **limits: int) -> list[tuple[str, str | bytes]]:
    async def once():  # noqa: ANN202
        yield data

    form = await MultiPartParser(Headers({"content-type": content_type}), once(), **limits).parse()
    items = [(k, await v.read() if isinstance(v, UploadFile) else v) for k, v in form.multi_items()]
    await form.close()
    return items


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4 + b"\r\n--x7Ybound" + b"\r\n"  # near-miss of the delimiter inside

COMMON = [
    body(file_part("image", PNG)),
    body(file_part("image", PNG), field_part("top_k", b"3")),
    body(field_part("top_k", b"3"), file_part("image", b"")),  # an empty file is still a file
    body(file_part("images", b"a"), file_part("images", b"bb"), file_part("images", b"ccc")),
    body(field_part("top_k", b"1"), field_part("top_k", b"2")),
    body(file_part("image", PNG, filename="")),  # filename="" still makes a file part
    body(field_part("image", b"not a file")),
    body(field_part("caf\xc3\xa9", "d\u00e9j\u00e0".encode())),  # utf-8 names and values
    body(file_part("image", PNG), end=b"--\r\nepilogue ignored"),
    body(file_part("image", PNG), end=b"--"),
    body((b'content-disposition: form-data; name="image"; filename="x"', b"lower-case header")),
    body((b'Content-Disposition: form-data; name=image; filename=x\r\nX-Other: 1', b"unquoted params")),
]


@pytest.mark.parametrize("data", COMMON)
def test_fast_path_matches_starlette(data: bytes) -> None:
    fast = parse_form(data, B, max_files=64, max_fields=16)
    assert fast is not None, "the common shape should take the fast path"
    assert fast == asyncio.run(starlette_items(data, max_files=64, max_fields=16))


UNUSUAL = [
    b"preamble\r\n" + body(file_part("image", PNG)),  # a preamble before the first delimiter
    body(file_part("image", PNG)).replace(b"\r\n", b"\n"),  # bare LF line ends
    body(file_part("image", PNG))[:-20],  # no closing delimiter
    body(file_part("image", PNG), end=b"  \r\n"),  # padding after the delimiter, then nothing
    body((b"Content-Type: image/png", b"no disposition")),
    body((b'Content-Disposition: form-data; filename="x"', b"no name")),
    body((b'Bad Header: form-data; name="image"', b"a header name with a space")),
    body((b"", b"no headers at all")),
    body(field_part("big", b"x" * (1024 * 1024 + 1))),  # over Starlette's field limit
    body(file_part("image", b"data\r\n--x7YboundaryX more data")),  # the delimiter, then not an end of part
    b"",
]


@pytest.mark.parametrize("data", UNUSUAL)
def test_anything_unusual_is_left_to_starlette(data: bytes) -> None:
    assert parse_form(data, B, max_files=64, max_fields=16) is None


def test_limits_are_left_to_starlette_and_its_errors_come_through() -> None:
    data = body(*(file_part("images", b"x") for _ in range(5)))
    assert parse_form(data, B, max_files=4, max_fields=16) is None
    with pytest.raises(MultiPartException, match="Too many files"):
        asyncio.run(read_form(data, Headers({"content-type": CT}), max_files=4, max_fields=16))
    data = body(*(field_part(f"f{i}", b"x") for i in range(3)))
    with pytest.raises(MultiPartException, match="Too many fields"):
        asyncio.run(read_form(data, Headers({"content-type": CT}), max_files=4, max_fields=2))


@pytest.mark.parametrize("data", UNUSUAL)
def test_read_form_falls_back_to_starlettes_answer(data: bytes) -> None:
    headers = Headers({"content-type": CT})
    try:
        expected: object = asyncio.run(starlette_items(data, max_files=64, max_fields=16))
    except MultiPartException as exc:
        expected = type(exc)
    try:
        got: object = asyncio.run(read_form(data, headers, max_files=64, max_fields=16))
    except MultiPartException as exc:
        got = type(exc)
    assert got == expected


def test_boundary_of() -> None:
    assert boundary_of(CT) == B
    assert boundary_of('multipart/form-data; boundary="quoted b"') == b"quoted b"
    assert boundary_of("multipart/form-data") is None
    assert boundary_of("multipart/form-data; boundary=b; charset=latin-1") is None  # Starlette decodes that


def test_what_real_clients_send_takes_the_fast_path() -> None:
    files = {"image": ("a.png", PNG, "image/png")}
    request = httpx.Request("POST", "http://x/predict", files=files, data={"top_k": "2"})
    data = request.read()
    boundary = boundary_of(request.headers["content-type"])
    assert boundary is not None
    assert parse_form(data, boundary, max_files=4, max_fields=16) == [("top_k", "2"), ("image", PNG)]
