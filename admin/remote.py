"""``imgserve retrain --via URL``: upload class folders to an admin runner, start a job there and follow it.

Every expected failure (runner unreachable, refused token, a 4xx answer, a failed job) becomes one
``ImgServeError`` line, never a traceback.
"""

from __future__ import annotations

import tempfile
import time
import zipfile
from pathlib import Path
from typing import IO, Any

from inference.errors import ImgServeError, InvalidInput
from inference.imagecodec import IMAGE_SUFFIXES


class RunnerUnreachable(ImgServeError):
    http_status = 502
    error_type = "runner_unreachable"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _check_size(src: Path, size: int, limit: int | None, what: str) -> None:
    if limit is not None and size > limit:
        raise InvalidInput(
            f"--data {src}: {what} {_mib(size)}; the admin runner accepts uploads of at most {_mib(limit)} "
            "(its IMGSERVE_MAX_UPLOAD_BYTES): upload fewer images, or split them over several --data"
        )


def dataset_archive(src: Path, limit: int | None) -> IO[bytes]:
    """``src`` as a zip in an open temporary file (memory stays flat whatever the size). A folder becomes a zip
    of what training would read of it (``training.folders.image_files``: images inside class folders), stored
    as they are (images are compressed already). Refused before anything is read or written when there is
    nothing to train on or, by the files' sizes, more than ``limit`` bytes (the runner's upload limit)."""
    from training.folders import image_files

    if src.is_file():
        _check_size(src, src.stat().st_size, limit, "the zip is")
        return open(src, "rb")  # noqa: SIM115 - the caller closes it after the upload
    files = image_files(src)
    if not files:
        raise InvalidInput(
            f"--data {src}: no images in class folders (expected {src}/<class>/<image>, "
            f"with suffix {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    _check_size(src, sum(path.stat().st_size for _, path in files), limit, f"{len(files)} images are")
    out = tempfile.TemporaryFile()
    try:
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            for rel, path in files:
                zf.write(path, rel)
        _check_size(src, out.tell(), limit, "the zip of its images is")
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _upload(client: Any, base: str, src: Path, limit: int | None) -> str:
    """One ``POST /datasets`` of ``src`` as an application/zip body streamed from disk; returns the dataset id.
    The Content-Length goes first, so a runner with a smaller limit answers 413 before reading it."""
    with dataset_archive(src, limit) as archive:
        size = archive.seek(0, 2)
        archive.seek(0)
        headers = {"Content-Type": "application/zip", "Content-Length": str(size)}
        return _checked(client.post(f"{base}/datasets", content=archive, headers=headers))["id"]


def _runner_limit(client: Any, base: str) -> int | None:
    """The runner's upload limit, from its ``/health`` (None from a runner that does not say)."""
    try:
        limit = client.get(f"{base}/health").json().get("max_upload_bytes")
    except ValueError:
        return None
    return limit if isinstance(limit, int) else None


def _checked(r: Any) -> Any:
    if r.status_code >= 400:
        try:
            message = r.json().get("error", r.text)
        except ValueError:
            message = r.text
        raise ImgServeError(f"admin runner answered {r.status_code}: {message}")
    return r.json()


def _print_new_events(job: dict[str, Any], seen: int) -> int:
    for event in job.get("history", [])[seen:]:
        if event.get("event") == "epoch":
            m = event.get("metrics", {})
            print(f"  epoch {event['epoch']}/{event['epochs']}: acc {m.get('accuracy', 0):.4f} "
                  f"val_acc {m.get('val_accuracy', 0):.4f}", flush=True)
        elif event.get("event") == "stage":
            print(f"  {event.get('stage')}", flush=True)
    return len(job.get("history", []))


def run_remote(base: str, token: str | None, data: list[Path], job_params: dict[str, Any]) -> dict[str, Any]:
    """Upload every ``data`` folder or zip, submit one job with ``job_params``, print its epochs, and return
    its result (raises with the job's error when it did not succeed)."""
    import httpx

    for src in data:  # before anything goes over the wire
        if not src.exists():
            raise InvalidInput(f"--data {src}: no such file or folder")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = base.rstrip("/")
    try:
        with httpx.Client(timeout=120, headers=headers) as client:
            limit = _runner_limit(client, base)
            ids = [_upload(client, base, src, limit) for src in data]
            job = _checked(client.post(f"{base}/jobs", json={"datasets": ids, **job_params}))
            print(f"job {job['id']} queued on {base}", flush=True)
            seen = 0
            while True:
                job = _checked(client.get(f"{base}/jobs/{job['id']}"))
                seen = _print_new_events(job, seen)
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(2)
    except httpx.HTTPError as exc:
        raise RunnerUnreachable(f"cannot reach the admin runner at {base}: {type(exc).__name__}: {exc}") from None
    if job["state"] != "succeeded":
        raise ImgServeError(f"job {job['id']} {job['state']}: {job.get('error')}")
    return job["result"]
