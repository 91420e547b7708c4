"""Prometheus text exposition as typed values: a :class:`Scrape` of :class:`Family` objects, for the admin's
live serving and rollout figures (admin/serving_metrics.py, admin/rollout_metrics.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Family:
    name: str
    type: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Scrape:
    at: float  # time.monotonic()
    families: dict[str, Family] = field(default_factory=dict)


def parse(text: str, at: float | None = None) -> Scrape:
    """Prometheus text exposition -> families by name (``_created`` samples dropped)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {}
    for fam in text_string_to_metric_families(text):
        samples = tuple(
            Sample(s.name, dict(s.labels), float(s.value)) for s in fam.samples if not s.name.endswith("_created")
        )
        families[fam.name] = Family(fam.name, fam.type, samples)
    return Scrape(time.monotonic() if at is None else at, families)
