"""The admin runner's HTTP API (FastAPI, its own process and port).

Why FastAPI rather than a second BentoML service: the admin runner serves no model and needs no batching,
workers or bento packaging; it needs plain JSON routes, uploads, bearer auth and background job tasks,
which FastAPI + uvicorn give with the least machinery, and it keeps BentoML out of the admin process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request, params
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile as StarletteUpload

from inference.errors import InvalidInput
from inference.registry import Registry
from serving.edge import check_admin, check_length, install_error_handlers, read_body, read_upload

from .dashboard import build_router
from .datasets import DatasetStore
from .jobs import JobRunner, JobStore
from .models_api import add_model_routes
from .requests import JobRequest, openapi_body, read_json
from .settings import AdminSettings

log = logging.getLogger(__name__)

MULTIPART_SLACK = 64 * 1024  # part headers and boundaries around the uploaded files


class AdminState:
    def __init__(self, settings: AdminSettings):
        self.settings = settings
        self.registry = Registry(settings.models_dir, cache_dir=settings.cache_dir)
        for stale in self.registry.clean_staging():
            log.warning("removed %s: a version its writer never finished (killed?)", stale)
        self.datasets = DatasetStore(settings)
        self.jobs = JobStore(settings.jobs_dir)
        self.runner = JobRunner(settings, self.jobs, self.datasets.images_dir, self.registry, on_finished=self.job_finished)

    async def notify_service(self, name: str) -> dict[str, Any]:
        """Ask the inference service to reload now (its alias watch would pick the change up anyway)."""
        if not self.settings.service_url:
            return {"notified": False, "reason": "no service_url configured"}
        headers = {"Authorization": f"Bearer {self.settings.admin_token}"} if self.settings.admin_token else {}
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                r = await client.post(f"{self.settings.service_url.rstrip('/')}/reload", headers=headers)
            return {"notified": r.status_code == 200, "status": r.status_code, "response": _json_or_text(r)}
        except httpx.HTTPError as exc:
            log.warning("could not notify the inference service at %s: %s", self.settings.service_url, exc)
            return {"notified": False, "reason": f"service unreachable: {type(exc).__name__}"}

    async def job_finished(self, job: dict[str, Any]) -> None:
        result = job.get("result") or {}
        if job["state"] == "succeeded" and (result.get("decision") or {}).get("promote"):
            job["service_reload"] = await self.notify_service(job["params"]["model"])


def _json_or_text(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text[:200]


def create_app(settings: AdminSettings | None = None) -> FastAPI:
    settings = settings or AdminSettings()
    state = AdminState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.runner.start()
        yield
        await state.runner.stop()

    # /docs and /openapi.json are routes below, behind the token like the API they describe
    app = FastAPI(title="imgserve admin", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.admin = state

    install_error_handlers(app)  # the one JSON error shape, as on the inference service (serving/edge.py)

    def require_token(request: Request) -> None:
        check_admin(request, settings.admin_token)

    auth = [Depends(require_token)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        # the upload limit lets `imgserve retrain --via` refuse an oversized folder before zipping it
        return {"status": "ok", "auth": bool(settings.admin_token), "max_upload_bytes": settings.max_upload_bytes}

    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=auth, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="imgserve admin API")

    _add_dataset_routes(app, state, auth)
    _add_job_routes(app, state, auth)
    add_model_routes(app, state, auth)
    # ---- dashboard pages (+ the few JSON endpoints only they need), same token check ---------------
    app.include_router(build_router(state, auth))
    return app


def _add_dataset_routes(app: FastAPI, state: AdminState, auth: list[params.Depends]) -> None:
    settings = state.settings

    @app.post("/datasets", dependencies=auth, status_code=201)
    async def upload_dataset(request: Request) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "")
        check_length(request, settings.max_upload_bytes + MULTIPART_SLACK, "the upload")  # 413 before reading
        if ctype.startswith("multipart/form-data"):
            form = await request.form(max_files=10_000, max_fields=100, max_part_size=settings.max_upload_bytes)
            upload = form.get("file")
            if isinstance(upload, StarletteUpload):
                data = await read_upload(upload, settings.max_upload_bytes)
                return (await asyncio.to_thread(state.datasets.ingest_zip, data)).to_dict()
            images = [f for f in form.getlist("images") if isinstance(f, StarletteUpload)]
            label = form.get("label")
            if images and isinstance(label, str):
                files = [(f.filename or "image", await read_upload(f, settings.max_upload_bytes)) for f in images]
                base = form.get("base")
                base_id = base if isinstance(base, str) and base else None
                return (await asyncio.to_thread(state.datasets.ingest_images, files, label, base_id)).to_dict()
            raise InvalidInput("send a zip as field 'file', or images as repeated field 'images' with a 'label'")
        if ctype in ("application/zip", "application/x-zip-compressed", "application/octet-stream"):
            body = await read_body(request, settings.max_upload_bytes, "the upload")
            return (await asyncio.to_thread(state.datasets.ingest_zip, body)).to_dict()
        raise InvalidInput("upload a zip (multipart field 'file' or an application/zip body)", http_status=415)

    @app.get("/datasets", dependencies=auth)
    async def list_datasets() -> list[dict[str, Any]]:
        return [d.to_dict() for d in state.datasets.list()]

    @app.get("/datasets/{dataset_id}", dependencies=auth)
    async def get_dataset(dataset_id: str) -> dict[str, Any]:
        return state.datasets.get(dataset_id).to_dict()


def _add_job_routes(app: FastAPI, state: AdminState, auth: list[params.Depends]) -> None:
    @app.post("/jobs", dependencies=auth, status_code=202, openapi_extra=openapi_body(JobRequest))
    async def start_job(request: Request) -> dict[str, Any]:
        return state.runner.submit(await read_json(request, JobRequest))

    @app.get("/jobs", dependencies=auth)
    async def list_jobs() -> list[dict[str, Any]]:
        return state.jobs.all()

    @app.get("/jobs/{job_id}", dependencies=auth)
    async def get_job(job_id: str, log_lines: int = 40) -> dict[str, Any]:
        job = state.jobs.load(job_id)
        progress = state.jobs.progress(job_id)
        job["progress"] = progress[-1] if progress else None
        job["history"] = progress
        job["log_tail"] = state.jobs.log_tail(job_id, max(0, min(log_lines, 500)))
        return job

    @app.delete("/jobs/{job_id}", dependencies=auth)
    async def cancel_job(job_id: str) -> dict[str, Any]:
        return await state.runner.cancel(job_id)
