"""The gRPC edge's pieces: where it binds (from BentoML's worker command line), token checks per method."""

from __future__ import annotations

import socket

import pytest

from inference.errors import ConfigError, Unauthorized
from serving.grpc_edge import GrpcSecurity
from serving.grpc_endpoint import grpc_endpoint, http_bind_host, worker_flag


def test_worker_flag_reads_both_spellings() -> None:
    argv = ["worker", ".", "--fd", "7", "--ssl-certfile=/c.pem", "--ssl-keyfile", "/k.pem"]
    assert worker_flag("--fd", argv) == "7" and worker_flag("--ssl-certfile", argv) == "/c.pem"
    assert worker_flag("--ssl-keyfile", argv) == "/k.pem" and worker_flag("--port", argv) is None


def test_grpc_binds_where_the_http_socket_is_bound() -> None:
    with socket.socket() as http:
        http.bind(("127.0.0.1", 0))
        http.listen()
        argv = ["worker", "--fd", str(http.fileno())]
        assert http_bind_host(argv) == "127.0.0.1"
        host, security = grpc_endpoint(None, None, None, None, argv)
        assert host == "127.0.0.1" and not security.tls and security.token is None
        http.getsockname()  # still open: the lookup used a duplicate descriptor
    assert grpc_endpoint("0.0.0.0", "t", None, None, argv)[0] == "0.0.0.0"  # an explicit setting wins
    assert grpc_endpoint(None, None, None, None, ["worker"])[0] == "127.0.0.1"  # outside BentoML: loopback
    tls = grpc_endpoint(None, None, None, None, ["w", "--ssl-certfile", "/c", "--ssl-keyfile", "/k"])[1]
    assert tls.tls and (tls.certfile, tls.keyfile) == ("/c", "/k")


def test_token_is_required_except_for_probes_and_other_services() -> None:
    security = GrpcSecurity(token="s3cret")
    infer = "/inference.GRPCInferenceService/ModelInfer"
    for metadata in (None, (), (("authorization", "Bearer nope"),), (("authorization", "s3cret"),)):
        with pytest.raises(Unauthorized, match="IMGSERVE_API_TOKEN"):
            security.check(infer, metadata)
    security.check(infer, (("authorization", "Bearer s3cret"),))
    security.check(infer, (("authorization", b"Bearer s3cret"),))
    for open_method in ("ServerLive", "ServerReady", "ModelReady"):
        security.check(f"/inference.GRPCInferenceService/{open_method}", None)
    security.check("/grpc.health.v1.Health/Check", None)
    GrpcSecurity().check(infer, None)  # no token configured: open


def test_tls_needs_both_files() -> None:
    with pytest.raises(ConfigError, match="both a certificate and a key"):
        GrpcSecurity(certfile="/c.pem")
