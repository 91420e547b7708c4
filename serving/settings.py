"""The serving process's one typed settings object (env prefix ``IMGSERVE_``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.batcher import BatchingConfig
from inference.imagecodec import DecodeLimits
from inference.session import SessionOptions

DEFAULT_MODEL = "fashion-mnist"


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class ServeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGSERVE_", extra="ignore")

    models_dir: Path = Field(Path("models"), description="registry root")
    model: str = Field(DEFAULT_MODEL, description="model name in the registry")
    version: str = Field("production", description="alias or version number to serve")
    variant: Literal["int8", "fp32"] = "int8"

    max_batch_size: int = Field(32, ge=1, le=1024)
    max_wait_ms: float = Field(0.0, ge=0, le=1000)
    max_queue: int = Field(256, ge=1)
    lanes: int = Field(default_factory=_cpus, ge=1, description="batches run in parallel (one ORT thread each)")
    intra_op_threads: int = Field(1, ge=0)
    allow_spinning: bool = False
    decode_threads: int = Field(default_factory=_cpus, ge=1)
    timeout_s: float = Field(10.0, gt=0, description="per-request deadline in the queue")

    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_pixels: int = Field(25_000_000, ge=1)
    max_side: int = Field(10_000, ge=1)
    max_batch_images: int = Field(64, ge=1, description="images per /predict_batch request")
    default_top_k: int = Field(5, ge=1)

    poll_interval_s: float = Field(2.0, ge=0, description="how often to check the production alias (0 = never)")
    grpc_port: int = Field(8001, ge=0, le=65535, description="OIP gRPC port (0 = disabled)")
    admin_token: str | None = Field(None, description="bearer token for POST /reload; unset = loopback only")

    def batching(self) -> BatchingConfig:
        return BatchingConfig(
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            max_queue=self.max_queue,
            lanes=self.lanes,
            timeout_s=self.timeout_s,
        )

    def session_options(self) -> SessionOptions:
        return SessionOptions(intra_op_threads=self.intra_op_threads, allow_spinning=self.allow_spinning)

    def decode_limits(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_pixels, max_side=self.max_side)
