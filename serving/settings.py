"""The serving process's one typed settings object (env prefix ``IMGSERVE_``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.errors import ConfigError
from inference.storage import path_to_str

if TYPE_CHECKING:  # imported where used: BentoML's arbiter imports service.py without numpy/onnxruntime/Pillow
    from inference.batcher import BatchingConfig
    from inference.imagecodec import DecodeLimits
    from inference.session import SessionOptions

    from .canary import CanaryPolicy
    from .connection import ConnectionLimits
    from .grpc_edge import GrpcSecurity

DEFAULT_MODEL = "fashion-mnist"
DEFAULT_PROVIDERS = "CPUExecutionProvider"
ALL_URLS = "."  # an OpenTelemetry excluded-URLs pattern (a regex searched in the URL) that matches every URL


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGSERVE_", extra="ignore")

    models_dir: Annotated[str, BeforeValidator(path_to_str)] = Field(
        "models", description="registry root: a folder or s3://bucket/prefix (docs/registry.md)"
    )
    cache_dir: Annotated[str | None, BeforeValidator(path_to_str)] = Field(
        None, description="local copies of versions from an s3:// registry (default $XDG_CACHE_HOME/imgserve, "
        "else ~/.cache/imgserve)",
    )
    model: str = Field(DEFAULT_MODEL, description="model name in the registry")
    models: str = Field(
        "", description="several models at once: comma list of NAME[:VARIANT], or * for every model in the "
        "registry; the first is the default of /predict (empty: IMGSERVE_MODEL alone)",
    )
    version: str = Field("production", description="alias or version number to serve (of every model)")
    variant: Literal["int8", "fp32"] = "int8"
    providers: str = Field(
        DEFAULT_PROVIDERS, description="ONNX Runtime execution providers, comma list in order of preference "
        "(CPU, CUDA, TensorRT, OpenVINO, ... as the installed onnxruntime build has them)",
    )

    workers: int = Field(
        default_factory=lambda: _cpus(), ge=1, le=64,
        description="HTTP worker processes, each with its own model copy (default: one per core, as Python runs "
        "one thread at a time per process)",
    )
    max_batch_size: int = Field(32, ge=1, le=1024)
    auto_batch: bool = Field(
        True, description="cap each model's batches at the size that runs fastest per row (measured at load)"
    )
    max_wait_ms: float = Field(0.0, ge=0, le=1000)
    max_queue: int = Field(256, ge=1)
    lanes: int = Field(default_factory=lambda: _cpus(), ge=1, description="batches run in parallel (one ORT thread each)")
    intra_op_threads: int = Field(1, ge=0)
    allow_spinning: bool = False
    decode_threads: int = Field(default_factory=lambda: _cpus(), ge=1)
    inline_decode_pixels: int = Field(
        4096, ge=0, description="images up to this many pixels (and 64 KiB) are decoded on the event loop, not in the pool"
    )
    inline_infer_ms: float = Field(
        2.0, ge=0, description="with one lane per worker, batches whose recent runs took at most this many ms of CPU run on the "
        "event loop instead of a lane thread (cheap models: the thread hand-off costs more than the run; 0 = never)",
    )
    timeout_s: float = Field(10.0, gt=0, description="per-request deadline in the queue")
    gc_threshold: int = Field(
        10_000, ge=0, description="Python's generation-0 GC threshold in the worker (0: Python's default, 700)"
    )
    max_inflight: int = Field(
        0, ge=0, description="HTTP requests admitted at once per worker, beyond that 503 (0 = derived from the queue)"
    )

    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_pixels: int = Field(25_000_000, ge=1)
    max_side: int = Field(10_000, ge=1)
    max_batch_images: int = Field(64, ge=1, description="images per /predict_batch request")
    default_top_k: int = Field(5, ge=1)

    keep_alive_s: int = Field(
        120, ge=1, le=3600,
        description="close an HTTP keep-alive connection after this many idle seconds; keep it longer than any "
        "client's or proxy's idle timeout (serving/uvicorn_config.py explains why)",
    )
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="request line + headers, at most (431 beyond)")
    header_timeout_s: float = Field(
        10.0, gt=0, description="a request's headers must be complete this long after its first byte (408 beyond)"
    )
    body_timeout_s: float = Field(10.0, gt=0, description="a request body may pause this long, at most (408 beyond)")
    max_connections: int = Field(1000, ge=1, description="open HTTP connections per worker (503 beyond)")
    linger_s: float = Field(
        30.0, ge=0, description="after refusing a body, read and discard what the client still sends for this long"
    )
    http_parser: Literal["auto", "httptools", "h11"] = Field(
        "auto", description="HTTP/1.1 parser under the connection edge: httptools (C) when installed, else h11"
    )

    drain_s: float = Field(
        15.0, ge=0, le=3600,
        description="SIGTERM: a worker stops being ready at once and exits within this many seconds, after "
        "answering what it was sent (serving/lifecycle.py); 0 = stop at once",
    )
    poll_interval_s: float = Field(2.0, ge=0, description="how often to check the production alias (0 = never)")
    grpc_port: int = Field(8001, ge=0, le=65535, description="OIP gRPC port (0 = disabled)")
    grpc_host: str | None = Field(
        None, description="OIP gRPC bind address (default: where HTTP binds, e.g. bentoml serve --host; else 127.0.0.1)"
    )
    api_token: str | None = Field(
        None, description="bearer token for inference on HTTP (Authorization header) and gRPC (authorization "
        "metadata); unset = open. Health, readiness and /metrics stay open",
    )
    ssl_certfile: str | None = Field(None, description="gRPC TLS certificate (default: bentoml serve --ssl-certfile)")
    ssl_keyfile: str | None = Field(None, description="gRPC TLS key (default: bentoml serve --ssl-keyfile)")
    admin_token: str | None = Field(None, description="bearer token for POST /reload; unset = loopback only")
    access_log: bool = Field(True, description="one structured log line per request")
    tracing: bool = Field(
        False, description="BentoML's OpenTelemetry spans per request (set up an exporter in BentoML's `tracing` config)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Live operations (docs/operations.md): rate limits, the prediction log, drift signals.
    rate_limit: str | None = Field(
        None, description="per client (bearer token, else address) and per worker, e.g. 100/minute; unset = none"
    )
    rate_limit_burst: int = Field(0, ge=0, description="requests a client may send at once (0 = the limit's count)")
    data_dir: str = Field("data", description="where the prediction log is written (predictions/ inside)")
    prediction_log_sample: float = Field(0.0, ge=0, le=1, description="share of requests logged (0 = off)")
    prediction_log_images: bool = Field(False, description="store the images of logged requests too")
    prediction_log_max_mb: int = Field(64, ge=1, description="rotate a prediction log file at this size")
    prediction_log_rotate_s: float = Field(3600.0, gt=0, description="... or when it is this old")
    prediction_log_url: str | None = Field(
        None, description="s3://bucket/prefix that rotated prediction log files are uploaded to; default "
        "<registry>/_predictions when the registry is on s3://, none for a local registry",
    )
    drift: bool = Field(True, description="PSI drift gauges for versions that have a reference.json")
    drift_window: int = Field(1000, ge=10, description="images per worker the drift signals are computed over")
    drift_min_samples: int = Field(200, ge=1, description="images in the window before a drift signal is reported")

    canary_window_s: float = Field(60.0, gt=0, description="the canary guard compares both versions over this window")
    canary_min_requests: int = Field(20, ge=1, description="canary answers in the window before the guard judges")
    canary_max_error_increase: float = Field(
        0.05, ge=0, le=1, description="abort when the canary's error rate exceeds production's by more (0.05 = 5 points)"
    )
    canary_max_p99_ratio: float = Field(1.5, ge=1, description="abort when the canary's p99 exceeds production's x this")
    canary_min_p99_increase_ms: float = Field(50.0, ge=0, description="... and by at least this much")

    def canary_policy(self) -> CanaryPolicy:
        from .canary import CanaryPolicy

        return CanaryPolicy(
            window_s=self.canary_window_s, min_requests=self.canary_min_requests,
            max_error_increase=self.canary_max_error_increase, max_p99_ratio=self.canary_max_p99_ratio,
            min_p99_increase_s=self.canary_min_p99_increase_ms / 1e3,
        )

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str | None) -> str | None:
        if value:
            from .ratelimit import RateLimit

            try:
                RateLimit.parse(value)
            except ConfigError as exc:
                raise ValueError(exc.message) from None
        return value or None

    @classmethod
    def from_env(cls, **overrides: object) -> ServeSettings:
        """Read ``IMGSERVE_*``; a bad value raises ConfigError naming the variable, not a pydantic dump."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = "; ".join(
                f"IMGSERVE_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"invalid serving settings: {problems}") from None

    @field_validator("providers")
    @classmethod
    def _providers_installed(cls, value: str) -> str:
        """Fail at start-up, naming what is installed, when a provider is missing. Only when the default is
        changed: BentoML's arbiter reads these settings and would otherwise import onnxruntime for nothing."""
        if value != DEFAULT_PROVIDERS:
            from inference.session import check_providers

            check_providers(value.split(","))
        return value

    def model_specs(self, registry_models: Callable[[], list[str]]) -> list[tuple[str, str]]:
        """(name, variant) of every model to serve, the default first: ``IMGSERVE_MODELS`` (``*``: all of
        ``registry_models()``), else ``IMGSERVE_MODEL``."""
        from inference.registry import check_name, check_variant

        words = [w.strip() for w in self.models.split(",") if w.strip()]
        if words == ["*"]:
            words = registry_models()
            if not words:
                raise ConfigError("IMGSERVE_MODELS=* but the registry holds no model yet")
        specs: dict[str, str] = {}
        for word in words or [self.model]:
            name, _, variant = word.partition(":")
            if name in specs:
                raise ConfigError(f"IMGSERVE_MODELS names {name!r} twice")
            specs[check_name(name)] = check_variant(variant or self.variant)
        return list(specs.items())

    @model_validator(mode="after")
    def _share_cores_between_workers(self) -> ServeSettings:
        """With several workers, the default lanes/decode threads split the cores instead of each taking all."""
        if self.workers > 1:
            share = max(1, _cpus() // self.workers)
            if "lanes" not in self.model_fields_set:
                self.lanes = share
            if "decode_threads" not in self.model_fields_set:
                self.decode_threads = share
        return self

    def inflight_limit(self) -> int:
        """Requests admitted per worker: enough to fill the queue and every lane twice over, so that shedding
        happens in the batcher (with a precise Retry-After) and this cap only bounds memory in a flood."""
        if self.max_inflight:
            return self.max_inflight
        return self.max_queue + 2 * self.lanes * self.max_batch_size + 2 * self.decode_threads

    def service_config(self) -> dict[str, object]:
        """BentoML's per-service config. Our batcher sheds load with 503 + Retry-After well before BentoML's
        own ``traffic.timeout`` (504) could fire, and BentoML's ``max_concurrency`` (429) stays unset."""
        config: dict[str, object] = {
            "workers": self.workers,
            "traffic": {"timeout": max(60.0, 3 * self.timeout_s + 30.0)},
            "logging": {"access": {"enabled": False}},  # we log one structured line per request ourselves
        }
        if not self.tracing:
            # BentoML wraps every request in OpenTelemetry spans (a server span plus one per receive/send
            # message) and records them even at its default sample rate 0, which exports nothing: ~15 % of
            # the event loop's CPU on small images. Excluding every URL skips the middleware's work entirely;
            # a `tracing.excluded_urls` in BentoML's own config file still takes precedence.
            config["tracing"] = {"excluded_urls": ALL_URLS}
        return config

    def grpc_endpoint(self, argv: Sequence[str]) -> tuple[str, GrpcSecurity]:
        """gRPC's bind address and security in a BentoML worker whose command line is ``argv``."""
        from .grpc_endpoint import grpc_endpoint

        return grpc_endpoint(self.grpc_host, self.api_token, self.ssl_certfile, self.ssl_keyfile, argv)

    def connection_limits(self) -> ConnectionLimits:
        from .connection import ConnectionLimits

        return ConnectionLimits(
            max_header_bytes=self.max_header_bytes,
            header_timeout_s=self.header_timeout_s,
            body_timeout_s=self.body_timeout_s,
            max_connections=self.max_connections,
            linger_s=self.linger_s,
            parser=self.http_parser,
        )

    def batching(self, models: int = 1) -> BatchingConfig:
        """One model's batcher. With several models the worker's lanes are shared out (at least one each), so
        N models do not run N times the threads the cores can take."""
        from inference.batcher import BatchingConfig

        return BatchingConfig(
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            max_queue=self.max_queue,
            lanes=(lanes := max(1, self.lanes // max(1, models))),
            timeout_s=self.timeout_s,
            inline_ms=self.inline_infer_ms if lanes == 1 else 0.0,
        )

    def session_options(self) -> SessionOptions:
        from inference.session import SessionOptions

        return SessionOptions(
            intra_op_threads=self.intra_op_threads, allow_spinning=self.allow_spinning,
            providers=tuple(p.strip() for p in self.providers.split(",") if p.strip()),
        )

    def decode_limits(self) -> DecodeLimits:
        from inference.imagecodec import DecodeLimits

        return DecodeLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_pixels, max_side=self.max_side)
