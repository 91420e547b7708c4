"""The file-based model registry: ``<root>/<model>/versions/<N>/`` plus ``aliases.json``.

All file access to the registry goes through this module (so a later fsspec backend changes one file).
Versions are immutable and appear whole (staged in a temp dir, then renamed); alias changes are atomic
(``os.replace``) and serialised by a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json, staging_dir
from .errors import ConfigError, NotFound, RegistryError
from .metadata import ModelCard

VARIANT_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
METADATA_FILE = "metadata.json"
ALIASES_FILE = "aliases.json"
KERAS_FILE = "model.keras"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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


class Registry:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    # ---- read side -------------------------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_dir(self, name: str, version: int) -> Path:
        return self.model_dir(name) / "versions" / str(int(version))

    def list_models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def list_versions(self, name: str) -> list[int]:
        vdir = self.model_dir(name) / "versions"
        if not vdir.is_dir():
            return []
        return sorted(int(p.name) for p in vdir.iterdir() if p.name.isdigit() and (p / METADATA_FILE).is_file())

    def card(self, name: str, version: int) -> ModelCard:
        path = self.version_dir(name, version) / METADATA_FILE
        if not path.is_file():
            raise NotFound(f"model {name!r} has no version {version}")
        return ModelCard.load(path)

    def aliases(self, name: str) -> dict[str, Any]:
        path = self.model_dir(name) / ALIASES_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as exc:
            raise RegistryError(f"cannot read aliases of model {name!r}: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"aliases of model {name!r} are not a JSON object")
        return data

    def resolve(self, name: str, ref: str | int = "production") -> int:
        """``3``, ``"3"``, ``"v3"``, ``"latest"`` or an alias name -> an existing version number."""
        versions = self.list_versions(name)
        if not versions:
            raise NotFound(f"model {name!r} has no versions in the registry")
        if isinstance(ref, int) or (isinstance(ref, str) and ref.lstrip("v").isdigit()):
            version = int(ref if isinstance(ref, int) else ref.lstrip("v"))
        elif ref == "latest":
            version = versions[-1]
        else:
            value = self.aliases(name).get(ref)
            if value is None:
                raise NotFound(f"model {name!r} has no alias {ref!r}")
            version = int(value)
        if version not in versions:
            raise NotFound(f"model {name!r} has no version {version}")
        return version

    def model_file(self, name: str, version: int, variant: str = "int8") -> Path:
        return self.version_dir(name, version) / VARIANT_FILES[check_variant(variant)]

    # ---- write side ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        mdir = self.model_dir(name)
        mdir.mkdir(parents=True, exist_ok=True)
        with open(mdir / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Path]:
        """A temp directory inside the model's ``versions/`` to build a version in; removed on error.
        Pass it to :meth:`register` to publish it."""
        with staging_dir(self.model_dir(name) / "versions") as tmp:
            yield tmp

    def register(self, staged: Path, card: ModelCard, *, set_production_if_none: bool = True) -> ModelCard:
        """Publish ``staged`` as the next version of ``card.name``: writes metadata.json (with the
        allocated version number) then renames the directory into place in one step."""
        name = check_name(card.name)
        for name_file in (VARIANT_FILES[v] for v in card.variants):
            if not (staged / name_file).is_file():
                raise RegistryError(f"cannot register {name}: {name_file} is missing from the staged version")
        with self._locked(name):
            versions = self.list_versions(name)
            version = (versions[-1] + 1) if versions else 1
            final = self.version_dir(name, version)
            if final.exists():  # a leftover without metadata: never overwrite, skip past it
                version = max(version, *(int(p.name) for p in final.parent.iterdir() if p.name.isdigit())) + 1
                final = self.version_dir(name, version)
            card = card.replace(version=version, created_at=card.created_at or utc_now())
            atomic_write_json(staged / METADATA_FILE, card.to_dict())
            os.rename(staged, final)
            if set_production_if_none and "production" not in self.aliases(name):
                self._write_aliases(name, {"production": version}, event=("register", version, "first version"))
        return card

    def _write_aliases(self, name: str, changes: dict[str, Any], *, event: tuple[str, int, str]) -> dict[str, Any]:
        data = self.aliases(name)
        data.update(changes)
        history = list(data.get("history", []))
        history.append({"action": event[0], "version": event[1], "reason": event[2], "at": utc_now()})
        data["history"] = history[-200:]
        atomic_write_json(self.model_dir(name) / ALIASES_FILE, data)
        return data

    def promote(self, name: str, version: int, *, reason: str = "") -> dict[str, Any]:
        """Point ``production`` at ``version``; the old production becomes ``previous``."""
        with self._locked(name):
            version = self.resolve(name, version)
            current = self.aliases(name).get("production")
            changes: dict[str, Any] = {"production": version}
            if current is not None and int(current) != version:
                changes["previous"] = int(current)
            return self._write_aliases(name, changes, event=("promote", version, reason))

    def rollback(self, name: str, to: int | None = None, *, reason: str = "") -> dict[str, Any]:
        """Point ``production`` back at ``previous`` (or at ``to``); the replaced version becomes ``previous``."""
        with self._locked(name):
            aliases = self.aliases(name)
            current = aliases.get("production")
            if to is None:
                if aliases.get("previous") is None:
                    raise NotFound(f"model {name!r} has no previous version to roll back to")
                to = int(aliases["previous"])
            target = self.resolve(name, to)
            changes: dict[str, Any] = {"production": target}
            if current is not None and int(current) != target:
                changes["previous"] = int(current)
            return self._write_aliases(name, changes, event=("rollback", target, reason))
