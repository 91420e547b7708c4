"""The prediction log on object storage: each finished log file (rotated, or closed at worker shutdown) is
uploaded under an ``s3://`` prefix, by default ``<registry>/_predictions/<model>/<file>.jsonl`` when the registry
is on S3 (``_`` keeps it out of the registry's model list); ``imgserve predictions export --from s3://…`` reads
it back. Through the registry's own storage module (inference/storage/s3.py): the same client, credentials and
endpoint settings (``AWS_ENDPOINT_URL``) as the registry.

Why whole files and not records: a worker writes to its local file (data dir) as before, so a slow or absent
store never touches the request path or the writer's pace; the upload happens in the writer thread at rotation.
Files are named ``<UTC start>-<pid>``, so workers and replicas never write the same key.
"""

from __future__ import annotations

import logging
from pathlib import Path

from inference.storage import is_remote
from inference.storage.cache import default_cache_dir

log = logging.getLogger(__name__)

DEFAULT_SUFFIX = "_predictions"


def log_url(models_dir: str, explicit: str | None) -> str | None:
    """Where finished files go: ``explicit``, else beside an s3:// registry, else nowhere (local files only)."""
    if explicit:
        if not is_remote(explicit):
            from inference.errors import ConfigError

            raise ConfigError(f"IMGSERVE_PREDICTION_LOG_URL must be an s3:// prefix, got {explicit!r}")
        return explicit.rstrip("/")
    return f"{models_dir.rstrip('/')}/{DEFAULT_SUFFIX}" if is_remote(models_dir) else None


class ObjectSink:
    """``sink(path, model)`` uploads one finished log file to ``<url>/<model>/<file name>``."""

    def __init__(self, url: str, cache_dir: str | Path | None = None):
        from inference.storage.s3 import S3Storage

        self.url = url.rstrip("/")
        self.storage = S3Storage(self.url + "/", Path(cache_dir) if cache_dir else default_cache_dir())

    def __call__(self, path: Path, model: str) -> None:
        self.storage.put(f"{model}/{path.name}", path.read_bytes())
        log.debug("prediction log: %s uploaded to %s/%s/", path.name, self.url, model)

    def download(self, dest: Path, model: str | None = None) -> Path:
        """Every uploaded file (of ``model``) into ``dest/<model>/``, for :func:`serving.predlog.read_records`."""
        for key in self.storage.keys(f"{model}/" if model else ""):
            if key.endswith(".jsonl") and key.count("/") == 1:
                blob = self.storage.get(key)
                if blob is not None:
                    (dest / key).parent.mkdir(parents=True, exist_ok=True)
                    (dest / key).write_bytes(blob.data)
        return dest
