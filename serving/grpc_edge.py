"""The OIP gRPC server's edge: binding, TLS, the inference token, and how it behaves in a burst.

* **Bind where HTTP binds** (serving/grpc_endpoint.py: the address from what BentoML told the worker).
* **TLS from the same files.** ``IMGSERVE_SSL_CERTFILE`` / ``IMGSERVE_SSL_KEYFILE``, by default the files
  given to ``bentoml serve --ssl-certfile/--ssl-keyfile`` (BentoML passes them on to its workers).
* **One inference token** (``IMGSERVE_API_TOKEN``) in the ``authorization`` metadata (``Bearer <token>``),
  as on HTTP; liveness/readiness RPCs and the gRPC health and reflection services stay open.
* **Overload is UNAVAILABLE, never CANCELLED.** 2,000 concurrent ModelInfer calls used to end with ~7 %
  CANCELLED without details. They never reached our code: gRPC core keeps calls the Python server has not
  picked up yet in a backlog, and past ``grpc.server.max_pending_requests`` (default 1,000; certain
  rejection at the hard limit, 3,000) it cancels them at random. The Python server picks calls up as fast
  as its event loop allows and our admission control answers the excess UNAVAILABLE + ``retry-after`` at
  once, so the backlog limits are raised far above any burst (a backlogged call holds little memory: HTTP/2
  flow control bounds the bytes a client may send ahead). Measured with 2,000 concurrent calls from one
  tritonclient.grpc.aio client: before, 148 CANCELLED; after, only OK and UNAVAILABLE "queue is full". A
  per-connection stream cap (``grpc.max_concurrent_streams``) was tried and left out: clients that open
  streams before reading the server's SETTINGS got RST_STREAM, i.e. UNAVAILABLE without a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from inference.errors import ConfigError, Unauthorized

from .edge import bearer_matches

SERVICE = "/inference.GRPCInferenceService/"
OPEN_METHODS = frozenset({"ServerLive", "ServerReady", "ModelReady"})  # probes need no token
MAX_PENDING_CALLS = 100_000  # gRPC core's backlog before it starts cancelling calls (its default: 1,000)

OVERLOAD_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", 2 * MAX_PENDING_CALLS),
)


@dataclass(frozen=True)
class GrpcSecurity:
    """What the gRPC server checks and serves with: an optional bearer token and optional TLS files."""

    token: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        if bool(self.certfile) != bool(self.keyfile):
            raise ConfigError("gRPC TLS needs both a certificate and a key (IMGSERVE_SSL_CERTFILE, IMGSERVE_SSL_KEYFILE)")

    @property
    def tls(self) -> bool:
        return bool(self.certfile)

    def check(self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None) -> None:
        """Raise :class:`Unauthorized` (UNAUTHENTICATED) unless ``method`` is open or the metadata carries
        ``authorization: Bearer <token>``."""
        if not self.token or not method.startswith(SERVICE) or method[len(SERVICE):] in OPEN_METHODS:
            return
        given = next((v for k, v in metadata or () if k == "authorization"), None)
        if isinstance(given, bytes):
            given = given.decode("latin-1")
        if not bearer_matches(given, self.token):
            raise Unauthorized("missing or wrong token: send the metadata 'authorization: Bearer <IMGSERVE_API_TOKEN>'")


def add_port(server: grpc.aio.Server, host: str, port: int, security: GrpcSecurity) -> int:
    """Bind ``host:port`` (TLS when configured); returns the bound port."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if security.tls:
            assert security.certfile and security.keyfile
            key, cert = Path(security.keyfile).read_bytes(), Path(security.certfile).read_bytes()
            return server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
        return server.add_insecure_port(address)
    except (RuntimeError, OSError) as exc:
        raise OSError(f"cannot bind the OIP gRPC server to {address}: {exc}") from exc

