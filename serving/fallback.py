"""Which version a worker serves instead when its alias target does not load (and it serves nothing yet).

:func:`fallback_candidates` lists what to try instead: earlier production versions, most recent first
(``previous``, then the alias history), then any older version, newest first. A newer version that never was
production (a candidate) is never served. Loading itself, and remembering failures: serving/loading.py.
"""

from __future__ import annotations

from inference.registry import Registry


def fallback_candidates(registry: Registry, name: str, target: int) -> list[int]:
    """Versions to serve when ``target`` does not load, best first (see the module docstring)."""
    existing = set(registry.list_versions(name))
    aliases = registry.aliases(name)
    history = [entry.get("version") for entry in reversed(aliases.get("history") or []) if isinstance(entry, dict)]
    were_production = [aliases.get("previous"), *history]
    older = sorted((v for v in existing if v < target), reverse=True)
    ordered: list[int] = []
    for value in [*were_production, *older]:
        try:
            version = int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if version in existing and version != target and version not in ordered:
            ordered.append(version)
    return ordered
