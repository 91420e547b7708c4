"""The registry on S3 (or any S3 API store): create-only writes for versions, ETag compare-and-swap for aliases.

Credentials, region and endpoint come from the standard AWS configuration only (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/config``). boto3 is imported on first
use, so a local registry never pays for it (~0.3 s of imports).

A version is published in three steps: claim the number (``versions/<N>/.claim``, ``If-None-Match: *``: of two
writers only one gets N), upload every file (create-only), upload ``manifest.json`` last (create-only). Only
versions with a manifest are listed, so a writer that dies half way leaves an invisible, burned number.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, Conflict, NotFound, RegistryError
from .base import Blob, Finalize, Storage, version_key
from .cache import VersionCache, safe_name
from .manifest import CLAIM_FILE, MANIFEST_FILE, Manifest

log = logging.getLogger(__name__)
_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}  # AWS answers 409 to a racing create


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``)."""
    rest = url[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"invalid registry URL {url!r}: expected s3://BUCKET[/PREFIX]")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


class S3Storage(Storage):
    def __init__(self, url: str, cache_dir: Path):
        self.bucket, self.prefix = parse_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.cache = VersionCache(Path(cache_dir) / "s3" / self.bucket / self.prefix)
        self._staging = Path(cache_dir) / "staging" / self.bucket / self.prefix
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._manifests: dict[tuple[str, int], Manifest] = {}  # immutable once visible

    # ---- plumbing --------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                # timeouts so a hung store delays the alias watch instead of stopping it
                config = Config(connect_timeout=5, read_timeout=60)
                self._client = boto3.session.Session().client("s3", config=config)
            return self._client

    def _call(self, op: str, key: str, **kw: Any) -> Any:
        """One S3 call; None for a missing key, Conflict for a failed precondition, RegistryError otherwise."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, op)(Bucket=self.bucket, Key=self.prefix + key, **kw)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return None
            if code in _CONFLICT:
                raise Conflict(f"s3://{self.bucket}/{self.prefix}{key} changed or exists already ({code})") from None
            raise RegistryError(f"S3 {op} s3://{self.bucket}/{self.prefix}{key} failed: {code} {exc}") from None
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, ...
            raise RegistryError(f"S3 {op} s3://{self.bucket}/{self.prefix}{key} failed: {exc}") from None

    def _keys(self, prefix: str, delimiter: str = "") -> tuple[list[str], list[str]]:
        """(keys, common prefixes) under ``prefix``, both relative to the registry root."""
        from botocore.exceptions import BotoCoreError, ClientError

        keys: list[str] = []
        dirs: list[str] = []
        kw = {"Bucket": self.bucket, "Prefix": self.prefix + prefix, **({"Delimiter": delimiter} if delimiter else {})}
        cut = len(self.prefix)
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kw):
                keys += [o["Key"][cut:] for o in page.get("Contents", [])]
                dirs += [p["Prefix"][cut:] for p in page.get("CommonPrefixes", [])]
        except (ClientError, BotoCoreError) as exc:
            raise RegistryError(f"S3 listing of s3://{self.bucket}/{self.prefix}{prefix} failed: {exc}") from None
        return keys, dirs

    def _put(self, key: str, body: Any, *, create_only: bool = False, if_match: str | None = None) -> None:
        kw: dict[str, Any] = {"Body": body}
        if create_only:
            kw["IfNoneMatch"] = "*"
        if if_match is not None:
            kw["IfMatch"] = if_match
        if self._call("put_object", key, **kw) is None:  # If-Match on a key deleted meanwhile
            raise Conflict(f"s3://{self.bucket}/{self.prefix}{key} was deleted meanwhile")

    # ---- small documents -------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        """An unconditional write under the prefix (append-only data beside the registry: the prediction log)."""
        self._put(key, data)

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, relative to the root."""
        return self._keys(prefix)[0]

    def get(self, key: str) -> Blob | None:
        r = self._call("get_object", key)
        return None if r is None else Blob(r["Body"].read(), r["ETag"])

    def tag(self, key: str) -> str | None:
        r = self._call("head_object", key)
        return None if r is None else str(r["ETag"])

    def swap(self, key: str, data: bytes, expected_tag: str | None) -> None:
        if expected_tag is None:
            self._put(key, data, create_only=True)
        else:
            self._put(key, data, if_match=expected_tag)

    # ---- models and versions ---------------------------------------------------------------------
    def models(self) -> list[str]:
        return sorted(d.rstrip("/") for d in self._keys("", "/")[1])

    def _numbers(self, model: str) -> tuple[set[int], set[int]]:
        """(every number that has any object, the numbers with a manifest)."""
        taken, visible = set(), set()
        base = f"{model}/versions/"
        for key in self._keys(base)[0]:
            head, _, rest = key[len(base):].partition("/")
            if head.isdigit():
                taken.add(int(head))
                if rest == MANIFEST_FILE:
                    visible.add(int(head))
        return taken, visible

    def versions(self, model: str) -> list[int]:
        return sorted(self._numbers(model)[1])

    def manifest(self, model: str, version: int) -> Manifest | None:
        cached = self._manifests.get((model, version))
        if cached is None:
            blob = self.get(version_key(model, version, MANIFEST_FILE))
            if blob is None:
                return None
            cached = self._manifests[(model, version)] = Manifest.from_bytes(blob.data)
        return cached

    def has_version(self, model: str, version: int) -> bool:
        return (model, version) in self._manifests or self.tag(version_key(model, version, MANIFEST_FILE)) is not None

    def files(self, model: str, version: int) -> list[str]:
        manifest = self.manifest(model, version)
        return sorted(manifest.files) if manifest else []

    def local_file(self, model: str, version: int, name: str) -> Path | None:
        manifest = self.manifest(model, version)
        if manifest is None:
            raise NotFound(f"model {model!r} has no version {version}")
        if name not in manifest.files:
            return None
        key = version_key(model, version, safe_name(name))

        def download(dest: Path) -> None:
            # one streamed GET: s3transfer's download_file sets up a thread pool per call, which cost more than
            # the transfer itself for files of a few MB on a loaded machine
            r = self._call("get_object", key)
            if r is None:
                raise RegistryError(f"{name} of {model} v{version} is listed in its manifest but missing in the store")
            with open(dest, "wb") as fh:
                for chunk in r["Body"].iter_chunks(1 << 20):
                    fh.write(chunk)

        return self.cache.fetch(self.cache.root / key, name, manifest, download, f"{name} of {model} v{version}")

    def staging_parent(self, model: str) -> Path:
        return self._staging / model

    def publish(self, model: str, staged: Path, finalize: Finalize, version: int | None = None) -> int:
        number = version if version is not None else max(self._numbers(model)[0], default=0) + 1
        claim = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}).encode()
        for _ in range(1000):
            try:
                self._put(version_key(model, number, CLAIM_FILE), claim, create_only=True)
                break
            except Conflict:
                if version is not None:
                    raise Conflict(f"model {model!r} already has a version {version} in {self.url}") from None
                number += 1  # another writer took it a moment ago
        finalize(number, staged)
        manifest = Manifest.from_bytes((staged / MANIFEST_FILE).read_bytes())
        for name in sorted(manifest.files):
            with open(staged / name, "rb") as fh:
                self._put(version_key(model, number, safe_name(name)), fh, create_only=True)
        self._put(version_key(model, number, MANIFEST_FILE), (staged / MANIFEST_FILE).read_bytes(), create_only=True)
        log.info("published %s v%d to %s (%d files)", model, number, self.url, len(manifest.files))
        return number
