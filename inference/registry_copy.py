"""``imgserve models copy SRC DST``: publish a registry to object storage (or back), keeping version numbers.

Each version is copied through the destination's normal publish path (manifest last, create-only), so a copy
that dies half way leaves the destination as it was plus some complete versions; running it again finishes
the job. A version number the destination already has is skipped when its files match and refused when they
do not (versions are immutable). Aliases are copied last, compare-and-swap, once every version they name
exists at the destination.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field

from .errors import Conflict, NotFound
from .registry import Registry
from .storage import MANIFEST_FILE

log = logging.getLogger(__name__)


@dataclass
class CopyReport:
    copied: list[tuple[str, int]] = field(default_factory=list)
    skipped: list[tuple[str, int]] = field(default_factory=list)
    aliases: dict[str, dict[str, object]] = field(default_factory=dict)


def copy_version(source: Registry, dest: Registry, name: str, version: int) -> bool:
    """True if copied, False if ``dest`` already has this exact version."""
    files = [f for f in source.version_files(name, version) if f != MANIFEST_FILE]
    if dest.has_version(name, version):
        theirs = [f for f in dest.version_files(name, version) if f != MANIFEST_FILE]
        if sorted(theirs) != sorted(files) or dest.card(name, version) != source.card(name, version):
            raise Conflict(f"{name} v{version} exists in {dest.root} with different content; versions are immutable")
        return False
    with dest.stage(name) as staged:
        for filename in files:
            src = source.fetch(name, version, filename)
            if src is None:
                raise NotFound(f"{filename} of {name} v{version} vanished from {source.root}")
            (staged / filename).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, staged / filename)
        dest.publish_copy(staged, name, version)
    return True


def copy_registry(source: Registry, dest: Registry, model: str | None = None) -> CopyReport:
    models = [model] if model else source.list_models()
    if model and not source.list_versions(model):
        raise NotFound(f"model {model!r} has no versions in {source.root}")
    report = CopyReport()
    for name in models:
        for version in source.list_versions(name):
            copied = copy_version(source, dest, name, version)
            (report.copied if copied else report.skipped).append((name, version))
            log.info("%s %s v%d", "copied" if copied else "already there:", name, version)
        aliases = source.aliases(name)
        if aliases:
            dest.replace_aliases(name, aliases)
        report.aliases[name] = {k: v for k, v in aliases.items() if k != "history"}
    return report
