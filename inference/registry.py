"""The model registry: ``<root>/<model>/versions/<N>/`` plus ``<root>/<model>/aliases.json``.

The root is a local folder or ``s3://bucket/prefix``; every byte goes through :mod:`inference.storage`, so
this module holds only the registry's rules: versions are immutable and appear whole (each with a
``manifest.json`` of sizes and SHA-256s), numbers are allocated without races, and alias changes are
compare-and-swap: of two concurrent promotes one wins and the other gets :class:`Conflict` (HTTP 409)
instead of silently undoing the first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .atomic import atomic_write_bytes, atomic_write_json, clean_stale_staging
from .errors import ConfigError, Conflict, NotFound, RegistryError
from .metadata import ModelCard
from .storage import MANIFEST_FILE, Manifest, is_remote, open_storage

VARIANT_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
METADATA_FILE = "metadata.json"
ALIASES_FILE = "aliases.json"
KERAS_FILE = "model.keras"
HISTORY_KEPT = 200
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# change(current aliases) -> (the aliases to set, the version the event is about)
AliasChange = Callable[[dict[str, Any]], tuple[dict[str, Any], int]]


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def check_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise ConfigError(f"invalid model name {name!r}: use letters, digits, '_', '-', '.' (max 64)")
    return name


def check_variant(variant: str) -> str:
    if variant not in VARIANT_FILES:
        raise ConfigError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANT_FILES)}")
    return variant


def _parse_aliases(name: str, data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise RegistryError(f"cannot read aliases of model {name!r}: {exc}") from exc
    if not isinstance(parsed, dict):
        raise RegistryError(f"aliases of model {name!r} are not a JSON object")
    return parsed


def _dump(aliases: dict[str, Any]) -> bytes:
    return (json.dumps(aliases, indent=2, sort_keys=True) + "\n").encode()


class Registry:
    def __init__(self, root: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None):
        self.storage = open_storage(root, cache_dir)
        self.remote = is_remote(root)
        self.root: Path | str = str(root) if self.remote else Path(root)

    # ---- read side -------------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        """A local registry's model folder (tests and tools that look at the files themselves)."""
        if self.remote:
            raise ConfigError(f"{self.root} is object storage: there is no model folder on this machine")
        return Path(self.root) / check_name(name)

    def version_dir(self, name: str, version: int) -> Path:
        return self.model_dir(name) / "versions" / str(int(version))

    def list_models(self) -> list[str]:
        return [m for m in self.storage.models() if _NAME_RE.match(m)]

    def list_versions(self, name: str) -> list[int]:
        return self.storage.versions(check_name(name))

    def card(self, name: str, version: int) -> ModelCard:
        path = self.fetch(name, version, METADATA_FILE)
        if path is None:
            raise NotFound(f"model {name!r} has no version {version}")
        return ModelCard.load(path)

    def aliases(self, name: str) -> dict[str, Any]:
        blob = self.storage.get(f"{check_name(name)}/{ALIASES_FILE}")
        return _parse_aliases(name, blob.data) if blob else {}

    def aliases_tag(self, name: str) -> str | None:
        """Changes whenever the aliases do; cheap (one HEAD on S3): what replicas poll."""
        return self.storage.tag(f"{check_name(name)}/{ALIASES_FILE}")

    def resolve(self, name: str, ref: str | int = "production") -> int:
        """``3``, ``"3"``, ``"v3"``, ``"latest"`` or an alias name -> an existing version number."""
        check_name(name)
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("v").isdigit()):
            version = int(ref if isinstance(ref, int) else ref.lstrip("v"))
        elif ref == "latest":
            versions = self.list_versions(name)
            if not versions:
                raise self._no_versions(name)
            return versions[-1]
        else:
            value = self.aliases(name).get(ref)
            if value is None:
                if not self.list_versions(name):
                    raise self._no_versions(name)
                raise NotFound(f"model {name!r} has no alias {ref!r}")
            version = int(value)
        if not self.storage.has_version(name, version):
            if not self.list_versions(name):
                raise self._no_versions(name)
            raise NotFound(f"model {name!r} has no version {version}")
        return version

    def _no_versions(self, name: str) -> NotFound:
        """The error for a model without versions, naming the registry (a mistyped root looks just like it)."""
        missing = not self.remote and not Path(self.root).is_dir()
        return NotFound(f"model {name!r} has no versions in the registry {self.root}"
                        + (" (no such folder)" if missing else ""))

    def version_files(self, name: str, version: int) -> list[str]:
        return self.storage.files(check_name(name), version)

    def fetch(self, name: str, version: int, filename: str) -> Path | None:
        """A local path to one file of a version (from object storage: a verified cached copy), or None."""
        if not self.storage.has_version(check_name(name), version):
            raise NotFound(f"model {name!r} has no version {version}")
        return self.storage.local_file(name, version, filename)

    def model_file(self, name: str, version: int, variant: str = "int8") -> Path:
        filename = VARIANT_FILES[check_variant(variant)]
        path = self.fetch(name, version, filename)
        if path is None:
            raise RegistryError(f"model file for variant {variant!r} of {name} v{version} is missing")
        return path

    # ---- write side ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Path]:
        """A temp directory to build a version in; removed on error. Pass it to :meth:`register`."""
        with self.storage.stage(check_name(name)) as tmp:
            yield tmp

    def clean_staging(self) -> list[Path]:
        """Remove staging folders left by dead writers (kill -9, power loss); live writers keep theirs."""
        return [p for m in self.list_models() for p in clean_stale_staging(self.storage.staging_parent(m))]

    def register(self, staged: Path, card: ModelCard, *, set_production_if_none: bool = True) -> ModelCard:
        """Publish ``staged`` as the next version of ``card.name``: metadata.json (with the allocated number)
        and manifest.json are written once the number is known, then the version appears in one step."""
        name = check_name(card.name)
        for name_file in (VARIANT_FILES[v] for v in card.variants):
            if not (staged / name_file).is_file():
                raise RegistryError(f"cannot register {name}: {name_file} is missing from the staged version")
        published: dict[str, ModelCard] = {}

        def finalize(version: int, folder: Path) -> None:
            final = card.replace(version=version, created_at=card.created_at or utc_now())
            atomic_write_json(folder / METADATA_FILE, final.to_dict())
            atomic_write_bytes(folder / MANIFEST_FILE, Manifest.of_dir(folder).to_bytes())
            published["card"] = final

        version = self.storage.publish(name, staged, finalize)
        if set_production_if_none:
            def first(aliases: dict[str, Any]) -> tuple[dict[str, Any], int]:
                return ({} if "production" in aliases else {"production": version}), version

            self._change_aliases(name, first, "register", "first version", retries=5)
        return published["card"]

    def publish_copy(self, staged: Path, name: str, version: int) -> None:
        """Publish ``staged`` (a complete version from another registry, metadata included) under its own
        number: how ``imgserve models copy`` keeps version numbers, which aliases refer to."""

        def finalize(_: int, folder: Path) -> None:
            atomic_write_bytes(folder / MANIFEST_FILE, Manifest.of_dir(folder).to_bytes())

        self.storage.publish(check_name(name), staged, finalize, version=version)

    def has_version(self, name: str, version: int) -> bool:
        return self.storage.has_version(check_name(name), version)

    def replace_aliases(self, name: str, data: dict[str, Any]) -> None:
        """Set the aliases document as a whole (copying a registry), compare-and-swap like every change."""
        key = f"{check_name(name)}/{ALIASES_FILE}"
        blob = self.storage.get(key)
        if blob is not None and _parse_aliases(name, blob.data) == data:
            return
        try:
            self.storage.swap(key, _dump(data), blob.tag if blob else None)
        except Conflict:
            raise Conflict(f"the aliases of model {name!r} in {self.root} changed during the copy; retry") from None

    def _change_aliases(self, name: str, change: AliasChange, action: str, reason: str, *, retries: int = 0) -> dict[str, Any]:
        """Read, change, compare-and-swap. ``retries`` re-reads and re-applies after a lost race (for changes
        that are right whatever the other writer did); with 0 the caller gets the Conflict."""
        key = f"{name}/{ALIASES_FILE}"
        for attempt in range(retries + 1):
            blob = self.storage.get(key)
            data = _parse_aliases(name, blob.data) if blob else {}
            changes, version = change(data)
            if not changes:
                return data
            data.update(changes)
            for alias in [k for k, v in changes.items() if v is None]:  # None removes an alias (canary-abort)
                del data[alias]
            history = list(data.get("history", []))
            history.append({"action": action, "version": version, "reason": reason, "at": utc_now()})
            data["history"] = history[-HISTORY_KEPT:]
            try:
                self.storage.swap(key, _dump(data), blob.tag if blob else None)
                return data
            except Conflict:
                if attempt == retries:
                    raise Conflict(
                        f"the aliases of model {name!r} changed while this {action} was being written (another "
                        "promote or rollback at the same moment); nothing was changed: check the current "
                        "production version and retry"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def promote(self, name: str, version: int, *, reason: str = "") -> dict[str, Any]:
        """Point ``production`` at ``version``; the old production becomes ``previous``."""
        version = self.resolve(name, version)

        def change(aliases: dict[str, Any]) -> tuple[dict[str, Any], int]:
            current = aliases.get("production")
            changes: dict[str, Any] = {"production": version}
            if current is not None and int(current) != version:
                changes["previous"] = int(current)
            return changes, version

        return self._change_aliases(name, change, "promote", reason)

    def rollback(self, name: str, to: int | None = None, *, reason: str = "") -> dict[str, Any]:
        """Point ``production`` back at ``previous`` (or at ``to``); the replaced version becomes ``previous``."""
        check_name(name)

        def change(aliases: dict[str, Any]) -> tuple[dict[str, Any], int]:
            target = to
            if target is None:
                if aliases.get("previous") is None:
                    raise NotFound(f"model {name!r} has no previous version to roll back to")
                target = int(aliases["previous"])
            target = self.resolve(name, target)
            current = aliases.get("production")
            changes: dict[str, Any] = {"production": target}
            if current is not None and int(current) != target:
                changes["previous"] = int(current)
            return changes, target

        return self._change_aliases(name, change, "rollback", reason)

    # ---- canary rollouts (serving/canary.py) --------------------------------------------------------
    def set_canary(self, name: str, version: int | str, weight: float, *, reason: str = "") -> dict[str, Any]:
        """Route ``weight`` percent of ``name``'s requests to ``version`` beside production (alias ``canary``,
        its weight under ``weights``)."""
        if not 0 < weight <= 100:
            raise ConfigError(f"a canary weight is a percentage above 0 and at most 100, got {weight:g}")
        target = self.resolve(name, version)

        def change(aliases: dict[str, Any]) -> tuple[dict[str, Any], int]:
            if aliases.get("production") is not None and int(aliases["production"]) == target:
                raise ConfigError(f"v{target} of {name!r} is production already; a canary is another version")
            return {"canary": target, "weights": {**(aliases.get("weights") or {}), "canary": weight}}, target

        return self._change_aliases(name, change, "canary", reason or f"canary at {weight:g} %")

    def end_canary(self, name: str, *, promote: bool, reason: str = "", only: int | None = None) -> dict[str, Any]:
        """Remove the canary (``abort``) or make it production (``promote``; the old one becomes ``previous``).
        ``only``: end it only if the canary is still that version (an automatic abort racing a new canary)."""
        check_name(name)

        def change(aliases: dict[str, Any]) -> tuple[dict[str, Any], int]:
            current = aliases.get("canary")
            if current is None:
                raise NotFound(f"model {name!r} has no canary")
            if only is not None and int(current) != only:
                return {}, int(current)
            weights = {k: v for k, v in (aliases.get("weights") or {}).items() if k != "canary"}
            changes: dict[str, Any] = {"canary": None, "weights": weights}
            if promote:
                changes["production"] = int(current)
                if aliases.get("production") is not None:
                    changes["previous"] = int(aliases["production"])
            return changes, int(current)

        return self._change_aliases(name, change, "canary-promote" if promote else "canary-abort", reason, retries=2)

    def set_shadow(self, name: str, version: int | str, share: float, *, reason: str = "") -> dict[str, Any]:
        """Mirror ``share`` percent of ``name``'s requests to ``version`` (alias ``shadow``); answers unchanged."""
        if not 0 < share <= 100:
            raise ConfigError(f"a shadow share is a percentage above 0 and at most 100, got {share:g}")
        target = self.resolve(name, version)

        def change(aliases: dict[str, Any]) -> tuple[dict[str, Any], int]:
            return {"shadow": target, "weights": {**(aliases.get("weights") or {}), "shadow": share}}, target

        return self._change_aliases(name, change, "shadow", reason or f"shadow at {share:g} %")

    def end_shadow(self, name: str, *, reason: str = "") -> dict[str, Any]:
        check_name(name)

        def change(aliases: dict[str, Any]) -> tuple[dict[str, Any], int]:
            if aliases.get("shadow") is None:
                raise NotFound(f"model {name!r} has no shadow")
            weights = {k: v for k, v in (aliases.get("weights") or {}).items() if k != "shadow"}
            return {"shadow": None, "weights": weights}, int(aliases["shadow"])

        return self._change_aliases(name, change, "shadow-stop", reason, retries=2)
