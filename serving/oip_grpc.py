"""Open Inference Protocol over gRPC (``inference.GRPCInferenceService``), compatible with ``tritonclient.grpc``.

BentoML 1.4 cannot serve gRPC for ``@bentoml.service`` classes, so the service starts this ``grpc.aio`` server
on its own event loop beside the HTTP app; both feed the same :class:`ModelRuntime` (one micro-batcher).
The messages are tritonclient's published KServe v2 protobufs, not a copy. Errors are mapped to status codes
in one place, :class:`serving.grpc_interceptor.ErrorInterceptor`.

Usage (inside the service's event loop)::

    server = await start_grpc_server(runtime, "127.0.0.1", 8001, security=GrpcSecurity(token="..."))
    ...
    await server.stop(grace=5)

Client (unmodified tritonclient; :func:`infer_images` wraps this)::

    import numpy as np, tritonclient.grpc as grpcclient
    client = grpcclient.InferenceServerClient("127.0.0.1:8001")
    inp = grpcclient.InferInput("image", [1], "BYTES")
    inp.set_data_from_numpy(np.array([open("shoe.png", "rb").read()], dtype=object))
    result = client.infer("fashion-mnist", [inp])
    result.as_numpy("probabilities"), result.as_numpy("label"), result.get_response().model_version
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from inference.errors import InvalidInput

from .grpc_edge import OVERLOAD_OPTIONS, GrpcSecurity, add_port
from .grpc_health import ReadinessHealth
from .grpc_interceptor import ErrorInterceptor, RpcObserver
from .oip_codec import RequestedOutput, Tensor, from_raw, from_values, to_raw
from .oip_dataplane import OipDataPlane
from .ports import foreign_listeners
from .ratelimit import grpc_client
from .runtime import ModelRuntime

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# protobuf ``contents`` field holding each datatype's values (when raw_input_contents is not used)
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


class OipServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The KServe v2 RPCs imgserve implements; the rest answer UNIMPLEMENTED (via the base class)."""

    def __init__(self, plane: OipDataPlane):
        self.plane = plane

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version))

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**self.plane.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:
        meta = self.plane.model_metadata(request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:
        config = self.plane.model_config(request.name, request.version)
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, mc.ModelConfig()))

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        stats = self.plane.model_statistics(request.name, request.version)
        return json_format.ParseDict(stats, pb.ModelStatisticsResponse())

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:
        models = self.plane.repository_index(request.ready)
        return pb.RepositoryIndexResponse(models=[pb.RepositoryIndexResponse.ModelIndex(**m) for m in models])

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        model = self.plane.resolve(request.model_name, request.model_version)
        with self.plane.admit(request.model_name, grpc_client(context)):
            inputs = _decode_inputs(request)
            outputs = [
                RequestedOutput(o.name, classification=_int_param(o.parameters, "classification"))
                for o in request.outputs
            ]
            timeout_s = _timeout_s(request, context)
            result = await self.plane.infer(
                model, inputs, outputs, request_id=request.id, timeout_s=timeout_s
            )
        return pb.ModelInferResponse(
            model_name=result.model_name,
            model_version=result.model_version,
            id=result.id,
            outputs=[
                pb.ModelInferResponse.InferOutputTensor(name=t.name, datatype=t.datatype, shape=t.shape)
                for t in result.outputs
            ],
            raw_output_contents=[to_raw(t) for t in result.outputs],
        )

    async def ModelStreamInfer(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ModelStreamInfer is not supported by imgserve")
        yield pb.ModelStreamInferResponse()  # pragma: no cover - unreachable, makes this an async generator


def _decode_inputs(request: pb.ModelInferRequest) -> list[Tensor]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(request.inputs)} inputs but {len(raw)} raw_input_contents; they must match")
    tensors = []
    for i, t in enumerate(request.inputs):
        if any(k.startswith("shared_memory") for k in t.parameters):
            raise InvalidInput(
                f"input '{t.name}': shared memory is not supported; send the data in the request"
            )
        if raw:
            tensors.append(from_raw(t.name, t.datatype, list(t.shape), raw[i]))
        else:
            field = _CONTENTS_FIELD.get(t.datatype)
            values = getattr(t.contents, field) if field else []
            tensors.append(from_values(t.name, t.datatype, list(t.shape), list(values)))
    return tensors


def _int_param(params: Any, key: str) -> int:
    if key not in params:
        return 0
    p = params[key]
    return int(p.int64_param or p.uint64_param)


def _timeout_s(request: pb.ModelInferRequest, context: Any) -> float | None:
    """The tighter of the client's gRPC deadline and tritonclient's ``timeout`` parameter (microseconds)."""
    candidates = []
    remaining = context.time_remaining()
    if remaining is not None:
        candidates.append(max(remaining, 1e-3))
    timeout_us = _int_param(request.parameters, "timeout")
    if timeout_us > 0:
        candidates.append(timeout_us / 1e6)
    return min(candidates) if candidates else None


class GrpcServer:
    """A started OIP gRPC server: ``port`` is the bound port (useful when asked for port 0)."""

    def __init__(self, server: grpc.aio.Server, host: str, port: int, health: ReadinessHealth):
        self.server, self.host, self.port, self.health = server, host, port, health

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self, grace: float | None = 5.0) -> None:
        """Health NOT_SERVING, refuse new RPCs, give in-flight ones ``grace`` seconds, then cancel the rest."""
        await self.health.stop()
        await self.server.stop(grace)


async def start_grpc_server(
    runtime: ModelRuntime | Callable[[], ModelRuntime],
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    reuse_port: bool = True,
    on_rpc: RpcObserver | None = None,
    security: GrpcSecurity | None = None,
    ready: Callable[[], bool] | None = None,
) -> GrpcServer:
    """Start the OIP gRPC server on the running event loop (the one the runtime uses).

    ``port`` defaults to ``runtime.settings.grpc_port``; 0 binds a free port (see ``.port``). With
    ``reuse_port`` (the gRPC default on Linux) several worker processes may bind the same port and the
    kernel spreads connections across them, as BentoML does for HTTP workers. ``on_rpc(endpoint, code,
    seconds)`` is called once per RPC (e.g. ``ServingMetrics.observe_request``). ``ModelInfer`` takes a slot of
    the runtime's admission control, shared with HTTP and OIP REST. ``security``: token and TLS
    (serving/grpc_edge.py, which also explains the overload options). ``grpc.health.v1`` reports ``ready()``
    (default: the model is loaded; the service adds "and not draining"), see serving/grpc_health.py.
    """
    security = security or GrpcSecurity()
    get_runtime = runtime if callable(runtime) else (lambda: runtime)
    if port is None:
        port = get_runtime().settings.grpc_port
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
        *OVERLOAD_OPTIONS,
    ]
    server = grpc.aio.server(interceptors=[ErrorInterceptor(on_rpc, security)], options=options)
    plane = OipDataPlane(get_runtime)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(OipServicer(plane), server)
    health = ReadinessHealth(ready or plane.ready)
    health.attach(server)
    _enable_reflection(server)
    bound = add_port(server, host, port, security)
    await server.start()
    if reuse_port and (others := foreign_listeners(bound)):  # see serving/ports.py
        await server.stop(None)
        raise OSError(f"the OIP gRPC port {bound} is already served by another server: {'; '.join(others)}. "
                      "Stop it, or give this one another port (IMGSERVE_GRPC_PORT; 0 turns gRPC off)")
    await health.sync()
    health.start()
    log.info(
        "OIP gRPC server listening on %s:%d (%s, %s)", host, bound, "TLS" if security.tls else "plaintext",
        "token required" if security.token else "no token",
    )
    return GrpcServer(server, host, bound, health)


def _enable_reflection(server: grpc.aio.Server) -> None:
    """gRPC server reflection, so grpcurl-style tools can list and call the service without the .proto files.
    grpcio-reflection (serve extra) must be below 1.82 next to tritonclient: later versions need protobuf 7."""
    try:
        from grpc_reflection.v1alpha import reflection
    except ImportError:
        log.warning("gRPC reflection is off: install grpcio-reflection (the serve extra lists it)")
        return
    from grpc_health.v1 import health

    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
    reflection.enable_server_reflection((service, health.SERVICE_NAME, reflection.SERVICE_NAME), server)


# ---- client side (scripts, benchmarks) -----------------------------------------------------------
def infer_images(
    client: Any, model: str, images: Sequence[bytes], *, version: str = "", timeout_s: float | None = None
) -> tuple[np.ndarray, list[str], str]:
    """Classify encoded images with one ``ModelInfer`` call of an unmodified ``tritonclient.grpc`` client.

    Returns (probabilities [N, C], labels, model version). ``client`` is a
    ``tritonclient.grpc.InferenceServerClient("host:8001")``, created once and reused.
    """
    from tritonclient.grpc import InferInput

    data = np.empty(len(images), dtype=np.object_)
    data[:] = list(images)
    inp = InferInput("image", [len(images)], "BYTES")
    inp.set_data_from_numpy(data)
    result = client.infer(model, [inp], model_version=version, client_timeout=timeout_s)
    labels = [v.decode() for v in result.as_numpy("label")]
    return result.as_numpy("probabilities"), labels, result.get_response().model_version
