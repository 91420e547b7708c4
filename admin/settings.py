"""The admin runner's one typed settings object (env prefix ``IMGSERVE_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.storage import path_to_str


class AdminSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGSERVE_", extra="ignore")

    admin_token: str | None = Field(None, description="bearer token; unset = bind to 127.0.0.1 only")
    models_dir: Annotated[str, BeforeValidator(path_to_str)] = Field("models", description="registry root: a folder or s3://bucket/prefix")
    cache_dir: Annotated[str | None, BeforeValidator(path_to_str)] = Field(None, description="local copies of s3:// versions")
    data_dir: Path = Field(Path("data"), description="uploaded datasets and job records")
    model: str = Field("fashion-mnist", description="default model name for jobs")
    service_url: str | None = Field("http://127.0.0.1:3000", description="inference service to tell about reloads")

    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1)
    max_zip_entries: int = Field(50_000, ge=1)
    max_uncompressed_bytes: int = Field(2 * 1024 * 1024 * 1024, ge=1)
    max_compression_ratio: float = Field(100.0, gt=1, description="per entry; beyond it a zip counts as a bomb")
    max_images_per_class_min: int = Field(1, ge=1, description="fewest images a class may have")

    max_parallel_jobs: int = Field(1, ge=1)
    promote_margin: float = Field(0.0, ge=0, le=1, description="candidate must beat production by this accuracy")
    job_python: str | None = Field(
        None,
        description="python executable for job subprocesses (default: this one); a wrapper script must exec it, "
        "since only the process the runner starts is killed with the runner (admin/lifeline.py)",
    )

    @property
    def datasets_dir(self) -> Path:
        return self.data_dir / "datasets"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"
