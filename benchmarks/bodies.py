"""Request bodies for the load generators, encoded once up front (multipart with a fixed boundary, raw, V2
JSON, JSON with base64), so that a client spends its CPU on sockets, not on formatting."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass

BOUNDARY = "imgservebenchboundary7f3a"


@dataclass(frozen=True)
class HttpRequest:
    body: bytes
    headers: dict[str, str]


def multipart_body(field_name: str, data: bytes, content_type: str, filename: str = "image") -> HttpRequest:
    """One file field, as ``curl -F image=@photo.jpg`` sends it."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return HttpRequest(body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})


def raw_body(data: bytes, content_type: str) -> HttpRequest:
    return HttpRequest(data, {"Content-Type": content_type})


def v2_json_body(data: bytes, input_name: str = "image") -> HttpRequest:
    """Open Inference Protocol REST: one BYTES element, base64 (MLServer's ``content_type: base64``)."""
    payload = {
        "inputs": [
            {
                "name": input_name,
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"content_type": "base64"},
                "data": [base64.b64encode(data).decode()],
            }
        ]
    }
    return HttpRequest(json.dumps(payload).encode(), {"Content-Type": "application/json"})


def json_base64_body(data: bytes, field_name: str = "image") -> HttpRequest:
    """``{"image": "<base64>"}``: how LitServe's examples send images."""
    return HttpRequest(json.dumps({field_name: base64.b64encode(data).decode()}).encode(), {"Content-Type": "application/json"})


HTTP_ENCODINGS: dict[str, Callable[[bytes, str], HttpRequest]] = {
    "multipart": lambda data, ctype: multipart_body("image", data, ctype),
    "raw": raw_body,
    "json-base64": lambda data, ctype: json_base64_body(data),
    "v2-json": lambda data, ctype: v2_json_body(data),
}


