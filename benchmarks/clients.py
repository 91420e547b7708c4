"""The asyncio clients of the closed-loop load generator (aiohttp for HTTP, grpc.aio + tritonclient's stubs for
gRPC), and the loopback guard every load generator here goes through."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .bodies import HTTP_ENCODINGS, HttpRequest

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def check_loopback(url: str) -> None:
    """Refuse anything but 127.0.0.0/8, ::1 or localhost: this tool must never load someone else's server."""
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_NAMES:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"refusing to send load to {host!r}: only loopback targets (127.0.0.1, ::1) are allowed")


class HttpClient:
    """aiohttp, one keep-alive connection per concurrent client."""

    def __init__(self, url: str, requests: Sequence[HttpRequest], *, concurrency: int, timeout_s: float):
        check_loopback(url)
        self.url = url
        self.requests = requests
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self._session: Any = None

    async def __aenter__(self) -> HttpClient:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.concurrency, force_close=False, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s), skip_auto_headers=("User-Agent",)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def send(self, index: int) -> str:
        import aiohttp

        req = self.requests[index % len(self.requests)]
        try:
            async with self._session.post(self.url, data=req.body, headers=req.headers) as resp:
                await resp.read()
                return str(resp.status)
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientConnectionError:
            return "connection-error"
        except aiohttp.ClientError as exc:
            return f"client-error:{type(exc).__name__}"


def infer_request(image: bytes, model: str, input_name: str = "image") -> Any:
    """One ``ModelInferRequest``: one BYTES element in ``raw_input_contents`` (4-byte length prefix), as
    tritonclient sends it."""
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name=model)
    tensor = req.inputs.add()
    tensor.name, tensor.datatype = input_name, "BYTES"
    tensor.shape.append(1)
    req.raw_input_contents.append(struct.pack("<I", len(image)) + image)
    return req


class GrpcClient:
    """KServe v2 / Triton ``ModelInfer`` over grpc.aio, with tritonclient's generated stubs. Each request is
    one BYTES element ``image`` sent in ``raw_input_contents`` (4-byte length prefix), as tritonclient does."""

    def __init__(self, address: str, model: str, images: Sequence[bytes], *, timeout_s: float, input_name: str = "image",
                 connections: int = 1):
        check_loopback(f"grpc://{address}")
        # One HTTP/2 connection per concurrent caller, as wrk opens one per HTTP connection: a single channel
        # carries every call on one TCP connection, which the kernel hands to one worker process of a server
        # whose workers share the port (SO_REUSEPORT), so the others idle. That, not gRPC, made imgserve's gRPC
        # points slower than HTTP with two workers (measured: 1 channel vs 64, docs/serving.md).
        self.connections = max(1, connections)
        self.address = address
        self.timeout_s = timeout_s
        self.requests = [infer_request(data, model, input_name) for data in images]
        self._channels: list[Any] = []
        self._stubs: list[Any] = []

    async def __aenter__(self) -> GrpcClient:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.use_local_subchannel_pool", 1)]  # else channels with equal options share one connection
        self._channels = [grpc.aio.insecure_channel(self.address, options=opts) for _ in range(self.connections)]
        self._stubs = [service_pb2_grpc.GRPCInferenceServiceStub(c).ModelInfer for c in self._channels]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for channel in self._channels:
            await channel.close()

    async def send(self, index: int) -> str:
        import grpc

        try:
            infer = self._stubs[index % len(self._stubs)]
            await infer(self.requests[index % len(self.requests)], timeout=self.timeout_s)
            return "OK"
        except grpc.aio.AioRpcError as exc:
            return "timeout" if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED else exc.code().name


def build_client(url: str, images: Sequence[bytes], content_type: str, *, concurrency: int, timeout_s: float,
                 encoding: str = "multipart") -> HttpClient | GrpcClient:
    """``http://host:port/path`` (``encoding``: multipart | raw | v2-json) or ``grpc://host:port/MODEL``."""
    parts = urlsplit(url)
    if parts.scheme == "grpc":
        model = parts.path.strip("/")
        if not model:
            raise ValueError("gRPC targets are grpc://HOST:PORT/MODEL_NAME")
        return GrpcClient(parts.netloc, model, images, timeout_s=timeout_s, connections=concurrency)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"unsupported target {url!r}: use http://… or grpc://…")
    encode = HTTP_ENCODINGS[encoding]
    return HttpClient(url, [encode(d, content_type) for d in images], concurrency=concurrency, timeout_s=timeout_s)
