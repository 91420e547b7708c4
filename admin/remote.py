"""``imgserve retrain --via URL``: upload class folders to an admin runner, start a job there and follow it.

Every expected failure (runner unreachable, refused token, a 4xx answer, a failed job) becomes one
``ImgServeError`` line, never a traceback.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path
from typing import Any

from inference.errors import ImgServeError, InvalidInput


class RunnerUnreachable(ImgServeError):
    http_status = 502
    error_type = "runner_unreachable"


def zip_folder(src: Path) -> bytes:
    """A folder of class folders as zip bytes (what ``POST /datasets`` takes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
    return buf.getvalue()


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

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = base.rstrip("/")
    try:
        with httpx.Client(timeout=120, headers=headers) as client:
            ids = []
            for src in data:
                if not src.exists():
                    raise InvalidInput(f"--data {src}: no such file or folder")
                payload = zip_folder(src) if src.is_dir() else src.read_bytes()
                files = {"file": (src.name + ".zip", payload, "application/zip")}
                ids.append(_checked(client.post(f"{base}/datasets", files=files))["id"])
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
