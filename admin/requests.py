"""What the admin API accepts, typed once: request bodies and version references (pydantic, strict).

Why strict: these bodies start jobs and move production. A lax parser turned ``"epochs": true`` into one
epoch, ``1.9`` into 1 and the string ``"nan"`` into a NaN margin written to job.json; a value of the wrong
type crashed a handler (500). Here a bool is not an int, a float is not an int, NaN/inf are not numbers,
a string is not a number, and an unknown field is an error (a typo like ``"epoch"`` would otherwise be
silently ignored). Every problem becomes one 400 ``invalid_input`` naming the field, rendered by the edge
(serving/edge.py) as on the inference service.

Bodies are parsed from the raw bytes whatever the Content-Type (``curl -d`` sends form-urlencoded), so the
routes read the body themselves and call :func:`parse_body`; :func:`openapi_body` documents the model.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from fastapi import Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from serving.edge import read_body
from training.architectures import ARCHITECTURES as _BUILDERS
from training.config import TrainConfig

ARCHITECTURES: tuple[str, ...] = tuple(_BUILDERS)  # training.architectures is the one list
Architecture = Literal[ARCHITECTURES]  # type: ignore[valid-type]
PromotePolicy = Literal["if-better", "force", "never"]

# ASCII only: str.isdigit() is true for "²" and int("²") raises, which was a 500.
VERSION_REF_PATTERN = r"^(v?[0-9]{1,9}|[A-Za-z][A-Za-z0-9_-]{0,63})$"
VersionRef = Annotated[str, StringConstraints(pattern=VERSION_REF_PATTERN)]
"""A version as text: ``3``, ``v3``, ``latest`` or an alias name (``production``)."""
VersionPath = Annotated[str, Path(pattern=VERSION_REF_PATTERN, description="3, v3, latest or an alias")]
Version = Annotated[int, Field(ge=1)] | VersionRef
DatasetId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,80}$")]
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Margin = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Reason = Annotated[str, StringConstraints(max_length=500)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class JobRequest(_Body):
    """``POST /jobs``: retrain on uploaded datasets."""

    datasets: list[DatasetId] = Field(min_length=1, max_length=100, description="dataset ids (a single id is accepted)")
    model: ModelName | None = Field(None, description="registered model name; default: the runner's IMGSERVE_MODEL")
    architecture: Architecture = TrainConfig.arch
    epochs: int = Field(5, ge=1, le=500)
    base_version: Version | None = Field("production", description="warm start from; 'scratch' or null: from scratch")
    promote: PromotePolicy = "if-better"
    margin: Margin | None = Field(None, description="accuracy the candidate must gain; default: IMGSERVE_PROMOTE_MARGIN")
    img_size: int | None = Field(None, ge=8, le=1024)

    @field_validator("datasets", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("model", "base_version", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any) -> Any:
        return None if value == "" else value

    @property
    def from_scratch(self) -> bool:
        return self.base_version in (None, "scratch")


class PromoteRequest(_Body):
    """``POST /models/{name}/promote``: point production at a version, forced or if it is better."""

    version: Version = "latest"
    policy: Literal["force", "if-better"] = "force"
    dataset: DatasetId | None = Field(None, description="policy 'if-better': the dataset both versions are scored on")
    margin: Margin | None = None
    reason: Reason | None = None


class RollbackRequest(_Body):
    """``POST /models/{name}/rollback``: production back to the previous version, or to version ``to``."""

    to: int | None = Field(None, ge=1)
    reason: Reason | None = None


Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]


class CanaryRequest(_Body):
    """``POST /models/{name}/canary``: route ``weight`` percent of requests to ``version`` beside production."""

    version: Version
    weight: Percent = Field(10.0, description="percent of requests the canary answers (0 < weight <= 100)")
    reason: Reason | None = None


class ShadowRequest(_Body):
    """``POST /models/{name}/shadow``: mirror ``share`` percent of requests to ``version``; answers unchanged."""

    version: Version
    share: Percent = Field(10.0, description="percent of requests mirrored (0 < share <= 100)")
    reason: Reason | None = None


class RolloutEndRequest(_Body):
    """``POST /models/{name}/canary/promote``, ``/canary/abort``, ``/shadow/stop``: an optional reason."""

    reason: Reason | None = None


Body = TypeVar("Body", bound=_Body)
MAX_JSON_BYTES = 64 * 1024  # what a route reads for parse_body: the bodies are a few hundred bytes


def parse_body(model: type[Body], raw: bytes) -> Body:
    """The body as ``model``; an empty body means "all defaults". Problems are raised as FastAPI's own
    validation error (``loc`` under ``body``), so the edge renders them like any other: one 400."""
    try:
        return model.model_validate_json(raw.strip() or b"{}")
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


async def read_json(request: Request, model: type[Body]) -> Body:
    """The request's JSON body, at most ``MAX_JSON_BYTES`` (413 beyond), as ``model`` (:func:`parse_body`)."""
    return parse_body(model, await read_body(request, MAX_JSON_BYTES))


def openapi_body(model: type[_Body]) -> dict[str, Any]:
    """``openapi_extra`` for a route that parses its body with :func:`parse_body`."""
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}}}}
