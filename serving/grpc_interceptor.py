"""The one place exceptions become gRPC status codes (:class:`ErrorInterceptor`), for every RPC of the OIP
gRPC server (serving/oip_grpc.py), the health and the reflection services included.

It also decodes each request itself. Left to gRPC, a message that does not parse ended as UNKNOWN
"Unexpected <class 'google.protobuf.message.DecodeError'>" (gRPC's answer when a deserializer raises),
i.e. a server fault by the status code's meaning; it is the client's bad input: INVALID_ARGUMENT, naming
the message type it should have been.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from inference.errors import ImgServeError, InvalidInput

from .edge import retry_after_value
from .grpc_edge import GrpcSecurity

log = logging.getLogger(__name__)

RpcObserver = Callable[[str, str, float], None]  # (endpoint "grpc:ModelInfer", status code name, seconds)


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """The one place exceptions become gRPC status codes: ``ImgServeError.grpc_code`` with its message,
    a ``retry-after`` trailer for UNAVAILABLE, UNIMPLEMENTED for RPCs imgserve does not offer, INTERNAL
    (details logged, not sent) for anything unexpected. It also reports each RPC's outcome to ``on_rpc``
    (same shape as the HTTP metrics' ``observe_request``)."""

    def __init__(self, on_rpc: RpcObserver | None = None, security: GrpcSecurity | None = None):
        self._on_rpc = on_rpc
        self._security = security or GrpcSecurity()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = handler.unary_unary
        method = handler_call_details.method
        endpoint = "grpc:" + method.rsplit("/", 1)[-1]

        decode = _decoder(handler.request_deserializer)

        async def guarded(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            t0 = time.perf_counter()
            code, details, trailer = grpc.StatusCode.OK, "", ()
            try:
                self._security.check(method, handler_call_details.invocation_metadata)
                request = decode(raw)
                result = behavior(request, context)
                return (await result) if inspect.isawaitable(result) else result
            except grpc.aio.AbortError:  # the handler aborted by itself
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except ImgServeError as exc:
                code, details = getattr(grpc.StatusCode, exc.grpc_code), exc.message
                if exc.retry_after:
                    trailer = (("retry-after", retry_after_value(exc.retry_after)),)
            except NotImplementedError:
                code, details = grpc.StatusCode.UNIMPLEMENTED, f"{method} is not supported by imgserve"
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                log.exception("unexpected error in %s", method)
                code, details = grpc.StatusCode.INTERNAL, "internal server error"
            finally:
                if self._on_rpc is not None:
                    try:
                        self._on_rpc(endpoint, getattr(code, "name", str(code)), time.perf_counter() - t0)
                    except Exception:
                        log.exception("RPC observer failed")
            await context.abort(code, details, trailing_metadata=trailer)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=None,  # decoded in guarded(): a malformed message is INVALID_ARGUMENT
            response_serializer=handler.response_serializer,
        )


def _decoder(deserialize: Callable[[bytes], Any] | None) -> Callable[[Any], Any]:
    """``deserialize`` with a DecodeError turned into InvalidInput (INVALID_ARGUMENT)."""
    if deserialize is None:
        return lambda raw: raw

    def decode(raw: Any) -> Any:
        try:
            return deserialize(raw)
        except DecodeError:
            kind = getattr(deserialize, "__self__", None)
            name = getattr(getattr(kind, "DESCRIPTOR", None), "full_name", "protobuf")
            raise InvalidInput(f"the request is not a valid {name} message") from None

    return decode
